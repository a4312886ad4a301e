"""AF Gateway's JupyterLab extension, prebuilt.

The wheel installs the built extension into ``share/jupyter/labextensions/@af-gateway/lab-extension``,
where JupyterLab finds it; ``_jupyter_labextension_paths`` points ``jupyter labextension develop``
at the same build in the source tree.
"""

__version__ = "0.1.0"


def _jupyter_labextension_paths():
    return [{"src": "labextension", "dest": "@af-gateway/lab-extension"}]
