"""Every user-settable choice and default of effnet (torch-free): one module per area."""
