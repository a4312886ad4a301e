"""JupyterLab server config of the UI tests: what jupyterlab.galata.configure_jupyter_server sets,
without its fixed port and its temporary directories (the stack passes port, root dir and
settings/workspaces dirs; see support/stack.ts).

Never use this configuration outside the tests: it removes the server's protections.
"""

from pathlib import Path

import jupyterlab

c = get_config()  # noqa: F821 (provided by traitlets when loading the file)

c.ServerApp.open_browser = False
c.ServerApp.port_retries = 0
c.IdentityProvider.token = ""
c.ServerApp.password = ""
c.ServerApp.disable_check_xsrf = True
# galata's in-page helper extension (window.galata), shipped with JupyterLab
c.LabServerApp.extra_labextensions_path = str(Path(jupyterlab.__file__).parent / "galata")
c.LabApp.expose_app_in_browser = True
c.ServerApp.terminado_settings = {"shell_command": ["/bin/bash", "--norc"]}
