"""Developer tools kept out of the installed package (the wheel ships ``lab`` and ``dashboards``
only): a headless-Chromium driver (``browser``) for the dashboard's end-to-end test, and the
script that makes the README's pictures (``screenshots``). Run them from the repository root."""
