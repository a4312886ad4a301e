"""Schemathesis hooks of the API fuzzer (loaded through SCHEMATHESIS_HOOKS=fuzz_hooks).

The Rucio routes stream NDJSON (application/x-json-stream); the OpenAPI document describes such a
body as the array of its lines. This reads it that way, so the response-schema check covers every
line instead of skipping a media type it does not know.
"""

import json

import schemathesis


@schemathesis.deserializer("application/x-json-stream")
def ndjson_lines(ctx, response):
    text = response.content.decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]
