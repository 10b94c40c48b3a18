"""The optional `app` extra: importing Gradio with its telemetry off, or a one-line error."""

from __future__ import annotations

import os
from types import ModuleType

from ravar.errors import ServeError

INSTALL_HINT = "pip install 'ravar[app]'"


def require_gradio() -> ModuleType:
    """The `gradio` module, imported with analytics disabled (nothing may reach the network);
    a ServeError telling how to install it when it is missing."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio
    except ImportError as e:
        raise ServeError(
            f"the web page needs Gradio, which is not installed ({e.msg}): {INSTALL_HINT}"
        ) from None
    return gradio
