"""Refuses to build a wheel without the prebuilt extension (it never builds the JavaScript itself)."""

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        built = Path(self.root, "af_gateway_lab", "labextension", "package.json")
        if not built.is_file():
            raise RuntimeError(
                f"{built} is missing: build the extension first "
                "(scripts/bootstrap.sh, or `npx tsc -b` at the repository root and then "
                "`jupyter-builder build .` in lab-extension/)"
            )
