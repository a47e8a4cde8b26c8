"""Downloads of weight files, once, into the standard caches; every failure one line, nothing partial kept.

- :func:`hf_file`: one file of a Hugging Face Hub repository through ``huggingface_hub.hf_hub_download`` into the
  standard HF cache (``HF_HUB_CACHE`` / ``HF_HOME``), honouring ``HF_ENDPOINT`` (read when called). With
  ``sized``, the file's size is asked first (one ``HEAD``) and a file over :data:`~effnet.limits.MAX_DOWNLOAD_BYTES`
  is refused before a byte of it is fetched.
- :func:`torchvision_file`: a torchvision weights URL into ``torch.hub.get_dir()/checkpoints`` (torchvision's own
  cache), checked against the sha256 prefix in its name (torchvision's convention); at most
  ``MAX_DOWNLOAD_BYTES`` fetched, written to a temporary file renamed when complete and checked.
  ``EFFNET_TORCHVISION_BASE_URL`` replaces ``https://download.pytorch.org`` (a mirror, or a test server).

Both paths stop a download that runs past :data:`~effnet.limits.DOWNLOAD_DEADLINE_S` or that stalls (fewer than
:data:`~effnet.limits.DOWNLOAD_MIN_BYTES_PER_S` on average over the last
:data:`~effnet.limits.DOWNLOAD_STALL_WINDOW_S`, waiting for a connection or a response included: a host that
accepts and never answers, or trickles bytes): one :class:`~effnet.errors.DownloadFailed` line, the partial file
removed. torchvision's host is read one receive at a time (each bounded by the window) and checked after each.
``hf_hub_download`` runs in a helper process (:func:`~effnet.models.transfer.run_helper`), in a thread watched
from its main thread (:func:`~effnet.models.transfer.watched`), its progress counted through its ``tqdm_class``;
once given up on, the helper answers and exits, ending the download wherever huggingface_hub is blocked (and it is
killed if it outlives the deadline). Partial files a killed run left (``.<name>.*.tmp`` in the torch hub cache,
``*.incomplete`` in the HF cache's ``blobs``) are never reused and are removed by the next download once untouched
for two stall windows.

Offline (``HF_HUB_OFFLINE=1`` or ``EFFNET_OFFLINE=1``): cached files only; one not in the cache is a one-line
:class:`~effnet.errors.MissingFile`. Without network (:func:`~effnet.models.transfer.unreachable`: the Hub's
host takes no connection), cached files are used the same way and a missing one is one
:class:`~effnet.errors.DownloadFailed` line.
``what`` (the weights reference) starts every message. torch,
huggingface_hub and tqdm are imported inside functions only.
"""

from __future__ import annotations

import hashlib
import http.client
import inspect
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import effnet.errors as errors
from effnet.errors import BadFile, DownloadFailed, InvalidValue, MissingFile
from effnet.io import atomic_path
from effnet.limits import MAX_DOWNLOAD_BYTES
from effnet.models.transfer import Stalled, Watch, describe_error, remove_stale, run_helper, unreachable, watched

__all__ = [
    "TORCHVISION_BASE_URL",
    "TORCHVISION_BASE_ENV",
    "OFFLINE_ENVS",
    "NoSuchEntry",
    "offline",
    "hf_cache_dir",
    "torchvision_hash_prefix",
    "hf_file",
    "torchvision_file",
]

TORCHVISION_BASE_URL = "https://download.pytorch.org"
"""Host of torchvision's weight files; ``EFFNET_TORCHVISION_BASE_URL`` replaces it when set."""
TORCHVISION_BASE_ENV = "EFFNET_TORCHVISION_BASE_URL"
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


# --------------------------------------------------------------------------------------------
# Hugging Face Hub
# --------------------------------------------------------------------------------------------


def _hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def _check_size(what: str, filename: str, info: Any, max_bytes: int) -> None:
    """Refuse, before any byte of it is fetched, a file over ``max_bytes`` (a dry run's answer)."""
    size = getattr(info, "file_size", None)
    if getattr(info, "will_download", False) and size is not None and size > max_bytes:
        raise InvalidValue(
            f"{what}: {filename} is {size:,} bytes; at most {max_bytes:,} are downloaded "
            "(effnet.limits.MAX_DOWNLOAD_BYTES)"
        )


def _counting_bar(watch: Watch) -> type:
    """A ``tqdm_class`` for ``hf_hub_download``: huggingface_hub's own bar that counts the bytes on ``watch`` and
    stops the transfer (raises :class:`Stalled` in the downloading thread) once the watch has a reason."""
    from huggingface_hub.utils import tqdm as hf_tqdm  # lazy: imported only when a Hub file is fetched

    class CountingBar(hf_tqdm):
        def update(self, n: float | None = 1) -> bool | None:
            watch.add(int(n or 0))
            watch.check()
            return super().update(n)

    return CountingBar


def _hf_repo_blobs(cache: Path, repo: str) -> Path:
    return cache / ("models--" + repo.replace("/", "--")) / "blobs"


_HF_HELPER = "from effnet.models.download import _hf_helper; _hf_helper()"


def hf_file(what: str, repo: str, revision: str | None, filename: str, sized: bool = False) -> Path:
    """``hf_hub_download`` of ``filename`` from ``repo`` at ``revision``, every huggingface_hub / HTTP failure
    translated to one line; a file the repository lacks is :class:`NoSuchEntry`.

    ``sized``: ask the file's size first (a dry run: one HEAD request) and refuse one over the bound. Online, the
    download runs in a helper process (:func:`~effnet.models.transfer.run_helper`) that watches it (deadline and
    stall, :class:`~effnet.models.transfer.Watch`) and ends, whatever huggingface_hub is blocked in, once it gives
    up; it is killed if it outlives the deadline. Offline, the cache is read here.
    """
    args = {"what": what, "repo": repo, "revision": revision, "filename": filename, "sized": sized}
    limit = Watch.from_limits()
    bounds = {"watch": limit.bounds(), "max_bytes": MAX_DOWNLOAD_BYTES}
    if offline():
        return _hf_file_here(**args, **bounds)
    blobs = _hf_repo_blobs(hf_cache_dir(), repo)
    before = set(blobs.glob("*.incomplete"))
    answer = run_helper(_HF_HELPER, {**args, **bounds}, limit.helper_timeout_s())
    if answer is None:  # killed: its partial file is removed here
        for partial in set(blobs.glob("*.incomplete")) - before:
            partial.unlink(missing_ok=True)
        raise DownloadFailed(
            f"{what}: downloading {filename} from {_hf_endpoint()} did not end within {limit.helper_timeout_s():g} "
            "s (effnet.limits.DOWNLOAD_DEADLINE_S); nothing partial was kept"
        )
    if "path" in answer:
        return Path(answer["path"])
    if answer.get("error") == "NoSuchEntry":
        raise NoSuchEntry(filename)
    error = getattr(errors, str(answer.get("error")), None)
    if not (isinstance(error, type) and issubclass(error, errors.EffnetError)):
        raise DownloadFailed(
            f"{what}: downloading {filename} from {_hf_endpoint()} failed: its helper process ended without an "
            f"answer (exit status {answer.get('exit')})"
        )
    raise error(str(answer.get("message")))


def _hf_helper() -> None:
    """Body of the helper process of :func:`hf_file`: the arguments as JSON on stdin, the answer as one JSON line
    on stdout (``{"path"}`` or ``{"error", "message"}``); then it exits at once, ending any thread still blocked in
    huggingface_hub."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it kills this helper
    payload = json.loads(sys.stdin.read())
    try:
        answer: dict[str, str] = {"path": str(_hf_file_here(**payload))}
    except NoSuchEntry as exc:
        answer = {"error": "NoSuchEntry", "message": str(exc)}
    except errors.EffnetError as exc:
        answer = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(answer), flush=True)
    os._exit(0)


def _hf_file_here(
    what: str,
    repo: str,
    revision: str | None,
    filename: str,
    sized: bool,
    watch: dict[str, float],
    max_bytes: int,
) -> Path:
    """:func:`hf_file` in this process: ``hf_hub_download`` run by :func:`~effnet.models.transfer.watched` under a
    watch of bounds ``watch``; files over ``max_bytes`` refused from the dry run's answer."""
    from huggingface_hub import errors as hf  # lazy: imported only when a Hub file is fetched
    from huggingface_hub import hf_hub_download  # lazy: as above

    endpoint, cache, is_offline = _hf_endpoint(), hf_cache_dir(), offline()
    no_network = None if is_offline else unreachable(endpoint)  # once, instead of huggingface_hub's retries
    local = is_offline or no_network is not None
    where = {"revision": revision, "cache_dir": str(cache), "endpoint": endpoint, "local_files_only": local}
    watch = Watch(**watch)
    parameters = inspect.signature(hf_hub_download).parameters
    if "tqdm_class" in parameters:
        where["tqdm_class"] = _counting_bar(watch)
    blobs = _hf_repo_blobs(cache, repo)
    remove_stale(blobs, "*.incomplete", watch.window_s)
    before = set(blobs.glob("*.incomplete"))

    def fetch() -> Path:
        if sized and not local and "dry_run" in parameters:
            _check_size(what, filename, hf_hub_download(repo, filename, dry_run=True, **where), max_bytes)
        return Path(hf_hub_download(repo, filename, **where))

    try:
        return watched(fetch, watch)
    except Stalled as exc:  # the helper may still hold its partial file: this call's are removed
        for partial in set(blobs.glob("*.incomplete")) - before:
            partial.unlink(missing_ok=True)
        raise DownloadFailed(
            f"{what}: downloading {filename} from {endpoint}: {exc}; nothing partial was kept"
        ) from None
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
            f"{what}: cannot download {filename} from {endpoint} ({describe_error(exc.__cause__)}) and "
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
            f"{what}: downloading {filename} from {endpoint}: {state} ({describe_error(exc)}); nothing partial was kept"
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
    watch = Watch.from_limits()
    remove_stale(target.parent, f".{filename}.*.tmp", watch.window_s)  # what a killed download left: never reused
    source = _torchvision_url(url)
    try:  # a temporary file beside target, renamed to it when complete and checked; removed otherwise
        _download(what, source, target, torchvision_hash_prefix(filename), watch)
    except Stalled as exc:
        raise DownloadFailed(f"{what}: downloading {source}: {exc}; the partial file was removed") from None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise MissingFile(f"{what}: {source} not found (HTTP 404)") from None
        raise DownloadFailed(f"{what}: downloading {source} failed (HTTP {exc.code}); nothing was kept") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):  # no connection within the stall window
            raise DownloadFailed(f"{what}: downloading {source}: {_timed_out(watch)}; nothing was kept") from None
        raise DownloadFailed(f"{what}: cannot reach {source} ({describe_error(exc.reason)})") from None
    except TimeoutError:
        raise DownloadFailed(
            f"{what}: downloading {source}: {_timed_out(watch)}; the partial file was removed"
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        raise DownloadFailed(
            f"{what}: the connection to {source} dropped mid-file ({describe_error(exc)}); the partial file was removed"
        ) from None
    return target


def _too_big(what: str, source: str, size: int) -> InvalidValue:
    return InvalidValue(
        f"{what}: {source} is {size:,}+ bytes; at most {MAX_DOWNLOAD_BYTES:,} are downloaded "
        "(effnet.limits.MAX_DOWNLOAD_BYTES)"
    )


def _timed_out(watch: Watch) -> str:
    """Why a wait timed out: the watch's reason, or the stall window (a wait is never longer)."""
    return watch.problem() or (
        f"stalled: nothing received for {watch.wait_s():g} s (effnet.limits.DOWNLOAD_STALL_WINDOW_S)"
    )


def _download(what: str, source: str, target: Path, hash_prefix: str | None, watch: Watch) -> None:
    """``source`` into ``target`` atomically: read one receive at a time, each wait bounded by ``watch.wait_s()``
    and ``watch`` checked after each (:class:`Stalled`); at most ``MAX_DOWNLOAD_BYTES`` (refused from the announced
    size before the body, else when passed), fewer bytes than announced is a dropped connection, the sha256
    checked against ``hash_prefix`` (``BadFile``; nothing kept)."""
    from tqdm.auto import tqdm  # lazy: a progress bar only while downloading

    request = urllib.request.Request(source, headers={"User-Agent": "effnet"})
    with urllib.request.urlopen(request, timeout=watch.wait_s()) as response:
        watch.check()
        announced = int(response.headers.get("Content-Length") or 0) or None
        if announced is not None and announced > MAX_DOWNLOAD_BYTES:
            raise _too_big(what, source, announced)
        digest, done = hashlib.sha256(), 0
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as out, tqdm(total=announced, unit="B", unit_scale=True, desc=target.name) as bar:
                while chunk := _receive(response, watch):
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


def _receive(response: http.client.HTTPResponse, watch: Watch) -> bytes:
    """The next bytes of ``response``: one receive (so a trickle cannot hold a large read open), its wait bounded by
    the socket's timeout (one stall window); ``b""`` at the end. Raises :class:`Stalled` when the watch gives up."""
    chunk = response.read1(1 << 20)
    watch.add(len(chunk))
    watch.check()
    return chunk
