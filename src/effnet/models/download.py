"""Downloads of weight files, once, into the standard caches; every failure one line, nothing partial kept.

- :func:`hf_file`: one file of a Hugging Face Hub repository through ``huggingface_hub.hf_hub_download`` into the
  standard HF cache (``HF_HUB_CACHE`` / ``HF_HOME``), honouring ``HF_ENDPOINT`` (read when called). With
  ``sized``, the file's size is asked first (one ``HEAD``) and a file over :data:`~effnet.limits.MAX_DOWNLOAD_BYTES`
  is refused before a byte of it is fetched.
- :func:`torchvision_file`: a torchvision weights URL into ``torch.hub.get_dir()/checkpoints`` (torchvision's own
  cache), checked against the sha256 prefix in its name (torchvision's convention); each wait bounded by
  :data:`~effnet.limits.DOWNLOAD_TIMEOUT_S`, at most ``MAX_DOWNLOAD_BYTES`` fetched, written to a temporary file
  renamed when complete and checked. ``EFFNET_TORCHVISION_BASE_URL`` replaces ``https://download.pytorch.org``
  (a mirror, or a test server).

Offline (``HF_HUB_OFFLINE=1`` or ``EFFNET_OFFLINE=1``): cached files only; one not in the cache is a one-line
:class:`~effnet.errors.MissingFile`. Without network (:func:`unreachable`: the Hub's host takes no connection),
cached files are used the same way and a missing one is one :class:`~effnet.errors.DownloadFailed` line.
``what`` (the weights reference) starts every message. torch,
huggingface_hub and tqdm are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import os
import re
import socket
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from effnet.errors import BadFile, DownloadFailed, InvalidValue, MissingFile
from effnet.io import atomic_path
from effnet.limits import DOWNLOAD_TIMEOUT_S, MAX_DOWNLOAD_BYTES

__all__ = [
    "TORCHVISION_BASE_URL",
    "TORCHVISION_BASE_ENV",
    "OFFLINE_ENVS",
    "NoSuchEntry",
    "PROBE_TIMEOUT_S",
    "offline",
    "unreachable",
    "hf_cache_dir",
    "torchvision_hash_prefix",
    "hf_file",
    "torchvision_file",
]

TORCHVISION_BASE_URL = "https://download.pytorch.org"
"""Host of torchvision's weight files; ``EFFNET_TORCHVISION_BASE_URL`` replaces it when set."""
TORCHVISION_BASE_ENV = "EFFNET_TORCHVISION_BASE_URL"
PROBE_TIMEOUT_S = 5.0
"""How long :func:`unreachable` waits for a TCP connection to a download host before it says there is no network."""
OFFLINE_ENVS = ("EFFNET_OFFLINE", "HF_HUB_OFFLINE")
"""Either set to 1/true/yes/on: use cached files only."""
_TRUE = {"1", "ON", "YES", "TRUE"}

_DROPPED = {"ReadError", "RemoteProtocolError", "ReadTimeout", "ConnectionResetError", "IncompleteRead"}
"""httpx / OS errors that mean the transfer started and the connection was lost."""


class NoSuchEntry(Exception):
    """A file the repository does not have (the caller tries the next name)."""


def offline() -> bool:
    """Whether ``EFFNET_OFFLINE`` or ``HF_HUB_OFFLINE`` is set to a true value (read now, not at import)."""
    return any(os.environ.get(name, "").strip().upper() in _TRUE for name in OFFLINE_ENVS)


def unreachable(url: str) -> str | None:
    """Why ``url``'s host (or the proxy the environment names for it) takes no TCP connection within
    :data:`PROBE_TIMEOUT_S`, e.g. no network or no DNS; None when it does. One quick probe, so that a machine
    without network says so once instead of through a client's retries."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        via = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = via.hostname or "", via.port or 80
    try:
        with socket.create_connection((host, port), timeout=PROBE_TIMEOUT_S):
            return None
    except (OSError, UnicodeError) as exc:
        return _describe(exc)


def hf_cache_dir() -> Path:
    """The Hugging Face Hub cache as ``huggingface_hub`` computes it, from the environment at call time."""
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return Path(os.path.expandvars(os.environ[name])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def torchvision_hash_prefix(filename: str) -> str | None:
    """The sha256 prefix in a torchvision file name: the hex digits after the last ``-`` (``b0-7f5810bc.pth``)."""
    match = re.search(r"-([0-9a-f]+)\.[^-]*$", filename)
    return match.group(1) if match else None


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no response"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text and text[0] else type(exc).__name__


# --------------------------------------------------------------------------------------------
# Hugging Face Hub
# --------------------------------------------------------------------------------------------


def _hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _check_size(what: str, filename: str, info: Any) -> None:
    """Refuse, before any byte of it is fetched, a file over :data:`MAX_DOWNLOAD_BYTES` (a dry run's answer)."""
    size = getattr(info, "file_size", None)
    if getattr(info, "will_download", False) and size is not None and size > MAX_DOWNLOAD_BYTES:
        raise InvalidValue(
            f"{what}: {filename} is {size:,} bytes; at most {MAX_DOWNLOAD_BYTES:,} are downloaded "
            "(effnet.limits.MAX_DOWNLOAD_BYTES)"
        )


def hf_file(what: str, repo: str, revision: str | None, filename: str, sized: bool = False) -> Path:
    """``hf_hub_download`` of ``filename`` from ``repo`` at ``revision``, every huggingface_hub / HTTP failure
    translated to one line; a file the repository lacks is :class:`NoSuchEntry`.

    ``sized``: ask the file's size first (a dry run: one HEAD request) and refuse one over the bound.
    """
    from huggingface_hub import errors as hf  # lazy: imported only when a Hub file is fetched
    from huggingface_hub import hf_hub_download  # lazy: as above

    endpoint, cache, is_offline = _hf_endpoint(), hf_cache_dir(), offline()
    no_network = None if is_offline else unreachable(endpoint)  # once, instead of huggingface_hub's retries
    local = is_offline or no_network is not None
    where = {"revision": revision, "cache_dir": str(cache), "endpoint": endpoint, "local_files_only": local}
    try:
        if sized and not local and "dry_run" in inspect.signature(hf_hub_download).parameters:
            _check_size(what, filename, hf_hub_download(repo, filename, dry_run=True, **where))
        return Path(hf_hub_download(repo, filename, **where))
    except hf.RevisionNotFoundError:
        raise MissingFile(f"{what}: repository {repo} has no revision {revision!r} on {endpoint}") from None
    except hf.RepositoryNotFoundError:
        raise MissingFile(f"{what}: no repository {repo} on {endpoint} (not found, private or gated)") from None
    except hf.LocalEntryNotFoundError as exc:
        if no_network is not None:
            raise DownloadFailed(
                f"{what}: cannot reach {endpoint} ({no_network}), and {filename} of {repo} is not in "
                f"the Hugging Face cache {cache}"
            ) from None
        if is_offline:
            raise MissingFile(
                f"{what}: {filename} of {repo} is not in the Hugging Face cache {cache} and "
                "downloads are off (HF_HUB_OFFLINE/EFFNET_OFFLINE)"
            ) from None
        raise DownloadFailed(
            f"{what}: cannot download {filename} from {endpoint} ({_describe(exc.__cause__)}) and "
            f"it is not in the cache {cache}"
        ) from None
    except getattr(hf, "RemoteEntryNotFoundError", hf.EntryNotFoundError):  # after the local miss, its sibling
        raise NoSuchEntry(filename) from None
    except hf.HfHubHTTPError as exc:
        status = getattr(exc.response, "status_code", "?")
        raise DownloadFailed(
            f"{what}: downloading {filename} from {endpoint} failed (HTTP {status}); nothing partial was kept"
        ) from None
    except InvalidValue:
        raise
    except Exception as exc:  # httpx/OS errors after huggingface_hub's retries: a dropped connection, a full disk
        dropped = type(exc).__name__ in _DROPPED
        state = "the connection dropped mid-file" if dropped else "failed"
        raise DownloadFailed(
            f"{what}: downloading {filename} from {endpoint}: {state} ({_describe(exc)}); nothing partial was kept"
        ) from None


# --------------------------------------------------------------------------------------------
# torchvision's host
# --------------------------------------------------------------------------------------------


def _torchvision_url(url: str) -> str:
    base = os.environ.get(TORCHVISION_BASE_ENV)
    if base and url.startswith(TORCHVISION_BASE_URL):
        return base.rstrip("/") + url[len(TORCHVISION_BASE_URL) :]
    return url


def torchvision_file(what: str, url: str) -> Path:
    """The cached file for ``url`` in ``torch.hub.get_dir()/checkpoints``, downloaded and hash-checked if absent."""
    import torch.hub  # lazy: the hub resolves references without torch until a file is needed

    filename = Path(urllib.parse.urlparse(url).path).name
    target = Path(torch.hub.get_dir()) / "checkpoints" / filename
    if target.is_file():
        return target
    if offline():
        raise MissingFile(
            f"{what}: {filename} is not in the torch hub cache {target.parent} and downloads are off "
            "(HF_HUB_OFFLINE/EFFNET_OFFLINE)"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    source = _torchvision_url(url)
    try:  # a temporary file beside target, renamed to it when complete and checked; removed otherwise
        _download(what, source, target, torchvision_hash_prefix(filename))
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise MissingFile(f"{what}: {source} not found (HTTP 404)") from None
        raise DownloadFailed(f"{what}: downloading {source} failed (HTTP {exc.code}); nothing was kept") from None
    except urllib.error.URLError as exc:
        raise DownloadFailed(f"{what}: cannot reach {source} ({_describe(exc.reason)})") from None
    except TimeoutError:
        raise DownloadFailed(
            f"{what}: {source} sent nothing for {DOWNLOAD_TIMEOUT_S:g} s "
            "(effnet.limits.DOWNLOAD_TIMEOUT_S); the partial file was removed"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadFailed(
            f"{what}: the connection to {source} dropped mid-file ({_describe(exc)}); the partial file was removed"
        ) from None
    return target


def _too_big(what: str, source: str, size: int) -> InvalidValue:
    return InvalidValue(
        f"{what}: {source} is {size:,}+ bytes; at most {MAX_DOWNLOAD_BYTES:,} are downloaded "
        "(effnet.limits.MAX_DOWNLOAD_BYTES)"
    )


def _download(what: str, source: str, target: Path, hash_prefix: str | None) -> None:
    """``source`` into ``target`` atomically: each wait bounded by ``DOWNLOAD_TIMEOUT_S``, at most
    ``MAX_DOWNLOAD_BYTES`` (refused from the announced size before the body, else when passed), fewer bytes than
    announced is a dropped connection, the sha256 checked against ``hash_prefix`` (``BadFile``; nothing kept)."""
    from tqdm.auto import tqdm  # lazy: a progress bar only while downloading

    request = urllib.request.Request(source, headers={"User-Agent": "effnet"})
    with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:
        announced = int(response.headers.get("Content-Length") or 0) or None
        if announced is not None and announced > MAX_DOWNLOAD_BYTES:
            raise _too_big(what, source, announced)
        digest, done = hashlib.sha256(), 0
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out, tqdm(total=announced, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := response.read(1 << 20):
                    done += len(chunk)
                    if done > MAX_DOWNLOAD_BYTES:
                        raise _too_big(what, source, done)
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
            if announced is not None and done < announced:  # read(amt) returns b"" at a close, never raises
                raise http.client.IncompleteRead(b"", announced - done)
            if hash_prefix and not digest.hexdigest().startswith(hash_prefix):
                raise BadFile(
                    f"{what}: {source}: the download's sha256 does not start with {hash_prefix} from its "
                    "name (corrupt, changed or cut short); the file was removed"
                )
