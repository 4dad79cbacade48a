#!/usr/bin/env python3
"""REDbot (PyPI `redbot`) on a URL, with request headers, which its CLI cannot send.

    python3 .ci/redbot_check.py URL [-H 'Authorization: Bearer TOKEN' ...]

Prints REDbot's text report and exits 1 if it has any caching note at the warning or bad
level (so CI can assert "no caching warning"), else 0.
"""
import sys
from argparse import ArgumentParser
from configparser import ConfigParser

import thor
from redbot.formatter import find_formatter
from redbot.resource import HttpResource
from httplint.note import categories, levels


def main() -> int:
    parser = ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("-H", "--header", action="append", default=[])
    args = parser.parse_args()
    headers = []
    for line in args.header:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))

    config_parser = ConfigParser()
    config_parser.read_dict({"redbot": {"enable_local_access": "True"}})
    config = config_parser["redbot"]
    resource = HttpResource(config)
    resource.set_request(args.url, headers=headers)
    formatter = find_formatter("text", "text", False)(
        config, resource, sys.stdout.write, {"tty_out": False, "descend": False}
    )
    formatter.bind_resource(resource)

    @thor.events.on(formatter)
    def formatter_done() -> None:
        thor.stop()

    resource.check()
    thor.run()

    notes = list(resource.response.notes) if resource.response else []
    bad = [
        note
        for note in notes
        if note.category == categories.CACHING and note.level in (levels.WARN, levels.BAD)
    ]
    for note in bad:
        print(f"CACHING {note.level.value}: {note.summary}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
