#!/bin/sh
# @HEADER@
exec >>@LOG@ 2>&1
echo @BANNER@
cd @WORKDIR@ || exit 97
@INTERPRETER@ @COMMAND@
code=$?
printf '%s\n' "$code" > @EXIT_CODE_PART@ && mv @EXIT_CODE_PART@ @EXIT_CODE@
exit "$code"
