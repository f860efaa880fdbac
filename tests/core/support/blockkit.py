"""What Slack refuses in Block Kit (``invalid_blocks``): its documented limits, as it says them.

Used by :mod:`fakechat` (which answers ``invalid_blocks`` as Slack does) and by the tests of
our message builders, so that a message which passes here is one Slack would take.
"""

from __future__ import annotations

from typing import Any

__all__ = ["block_kit_problems", "view_problems"]

_BLOCK_TYPES = {"section", "header", "actions", "context", "divider", "input", "image", "rich_text"}


def _units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _text_problems(obj: Any, where: str, limit: int, *, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict) or obj.get("type") not in ("plain_text", "mrkdwn"):
        return [f"{where}: not a text object"]
    if plain_only and obj["type"] != "plain_text":
        return [f"{where}: must be plain_text"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [f"{where}: text must be a non-empty string"]
    out = []
    if _units(text) > limit:
        out.append(f"{where}: must be less than {limit + 1} characters")
    if "verbatim" in obj and obj["type"] != "mrkdwn":
        out.append(f"{where}: verbatim is only for mrkdwn")
    if "emoji" in obj and obj["type"] != "plain_text":
        out.append(f"{where}: emoji is only for plain_text")
    return out


def _element_problems(el: Any, where: str, action_ids: set[str]) -> list[str]:
    if not isinstance(el, dict):
        return [f"{where}: not an object"]
    out: list[str] = []
    action_id = el.get("action_id")
    if action_id is not None:
        if len(action_id) > 255:
            out.append(f"{where}.action_id: must be less than 256 characters")
        if action_id in action_ids:
            out.append(f"{where}.action_id: {action_id!r} is not unique in the message")
        action_ids.add(action_id)
    if el.get("type") == "button":
        out += _text_problems(el.get("text"), f"{where}.text", 75, plain_only=True)
        if len(el.get("value", "")) > 2000:
            out.append(f"{where}.value: must be less than 2001 characters")
        if len(el.get("url", "")) > 3000:
            out.append(f"{where}.url: must be less than 3001 characters")
        if el.get("style") not in (None, "primary", "danger"):
            out.append(f"{where}.style: must be primary or danger")
        confirm = el.get("confirm")
        if confirm is not None:
            out += _text_problems(
                confirm.get("title"), f"{where}.confirm.title", 100, plain_only=True
            )
            out += _text_problems(confirm.get("text"), f"{where}.confirm.text", 300)
            out += _text_problems(
                confirm.get("confirm"), f"{where}.confirm.confirm", 30, plain_only=True
            )
            out += _text_problems(confirm.get("deny"), f"{where}.confirm.deny", 30, plain_only=True)
    elif el.get("type") == "plain_text_input":
        if not 0 <= int(el.get("max_length", 3000)) <= 3000:
            out.append(f"{where}.max_length: must be at most 3000")
    elif el.get("type") in ("mrkdwn", "plain_text"):
        out += _text_problems(el, where, 3000)
    return out


def block_kit_problems(blocks: Any, *, max_blocks: int = 50) -> list[str]:
    """What Slack would refuse in ``blocks`` (``invalid_blocks``), as its messages say it."""
    if not isinstance(blocks, list):
        return ["blocks: must be an array"]
    out: list[str] = []
    if len(blocks) > max_blocks:
        out.append(f"blocks: must be less than {max_blocks + 1} items")
    block_ids: set[str] = set()
    action_ids: set[str] = set()
    for i, block in enumerate(blocks):
        where = f"/blocks/{i}"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            out.append(f"{where}: unknown block type")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if len(block_id) > 255:
                out.append(f"{where}.block_id: must be less than 256 characters")
            if block_id in block_ids:
                out.append(f"{where}.block_id: {block_id!r} is not unique")
            block_ids.add(block_id)
        kind = block["type"]
        if kind == "header":
            out += _text_problems(block.get("text"), f"{where}.text", 150, plain_only=True)
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                out.append(f"{where}: a section needs text or fields")
            if "text" in block:
                out += _text_problems(block["text"], f"{where}.text", 3000)
            fields = block.get("fields", [])
            if len(fields) > 10:
                out.append(f"{where}.fields: must be less than 11 items")
            for j, f in enumerate(fields):
                out += _text_problems(f, f"{where}.fields/{j}", 2000)
            if "accessory" in block:
                out += _element_problems(block["accessory"], f"{where}.accessory", action_ids)
        elif kind == "actions":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 25:
                out.append(f"{where}.elements: must hold 1 to 25 items")
            for j, el in enumerate(elements):
                out += _element_problems(el, f"{where}.elements/{j}", action_ids)
        elif kind == "context":
            elements = block.get("elements", [])
            if not 1 <= len(elements) <= 10:
                out.append(f"{where}.elements: must hold 1 to 10 items")
            for j, el in enumerate(elements):
                out += _element_problems(el, f"{where}.elements/{j}", action_ids)
        elif kind == "input":
            out += _text_problems(block.get("label"), f"{where}.label", 2000, plain_only=True)
            out += _element_problems(block.get("element"), f"{where}.element", action_ids)
    return out


def view_problems(view: Any) -> list[str]:
    """What ``views.open`` would refuse in a modal view."""
    if not isinstance(view, dict) or view.get("type") != "modal":
        return ["view.type: must be modal"]
    out = _text_problems(view.get("title"), "view.title", 24, plain_only=True)
    for key in ("submit", "close"):
        if key in view:
            out += _text_problems(view[key], f"view.{key}", 24, plain_only=True)
    if len(view.get("private_metadata", "")) > 3000:
        out.append("view.private_metadata: must be less than 3001 characters")
    if len(view.get("callback_id", "")) > 255:
        out.append("view.callback_id: must be less than 256 characters")
    has_input = any(
        isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks", [])
    )
    if has_input and "submit" not in view:
        out.append("view.submit: required when the view has input blocks")
    return out + block_kit_problems(view.get("blocks", []), max_blocks=100)
