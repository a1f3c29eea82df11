"""`authz blocks`: list and lift the brute-force blocks of a running sidecar.

    authz blocks list [--admin ADDR] [--json]
    authz blocks clear [--admin ADDR] KEY

Both call the admin API (authz.v1.Admin ListBlocks / ClearBlocks) on the sidecar's
--admin-listen address. With --redis-url the blocks are every replica's, so one call to any
replica lists or lifts them everywhere (the other replicas drop a lifted block within a second).
KEY is a whole block key as `list` prints it, or just its value - a client address, say - to lift
that client's blocks under every policy. Exit 0 on success (`clear` also when nothing matched:
it prints how many were lifted), 2 when the admin API cannot be reached.
"""

from __future__ import annotations

import argparse
import sys
from typing import TextIO

from google.protobuf.json_format import MessageToJson

from authz._gen.authz.v1 import admin_pb2 as apb
from authz.adminclient import add_admin_argument, call

LIST = "/authz.v1.Admin/ListBlocks"
CLEAR = "/authz.v1.Admin/ClearBlocks"


def add_blocks_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "blocks",
        help="list or lift the brute-force blocks of a running sidecar",
        description="List or lift brute-force blocks (spec.protection.bruteForce) through the "
        "admin API. With --redis-url the blocks are shared by every replica.",
    )
    actions = parser.add_subparsers(dest="blocks_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the blocks in force, soonest end first")
    listing.add_argument("--json", action="store_true", help="print the raw answer as JSON")
    clear = actions.add_parser("clear", help="lift the blocks of a key or a value (e.g. an IP)")
    clear.add_argument("key", metavar="KEY", help="a block key as `list` prints it, or a value")
    for action in (listing, clear):
        add_admin_argument(action)
        action.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")


def render(answer: apb.ListBlocksResponse, out: TextIO) -> None:
    if not answer.blocks:
        out.write("no blocks\n")
        return
    width = max(len("KEY"), *(len(b.key) for b in answer.blocks))
    out.write(f"{'KEY':<{width}}  SECONDS LEFT\n")
    for block in answer.blocks:
        out.write(f"{block.key:<{width}}  {block.seconds_left}\n")


def run_blocks(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    if args.blocks_command == "list":
        answer = call(args, LIST, apb.ListBlocksRequest(), apb.ListBlocksResponse)
        if args.json:
            out.write(MessageToJson(answer, preserving_proto_field_name=True) + "\n")
        else:
            render(answer, out)
        return 0
    cleared = call(args, CLEAR, apb.ClearBlocksRequest(key=args.key), apb.ClearBlocksResponse)
    out.write(f"cleared {cleared.cleared} block{'' if cleared.cleared == 1 else 's'}\n")
    return 0
