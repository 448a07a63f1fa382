"""The agent protocol: how a task is rendered for the model and how its turns are read back."""
from toolmaster.protocol.chat_format import CHAT_TEMPLATE, SPECIAL_TOKENS, TAG_TOKENS, render_text
from toolmaster.protocol.messages import build_messages, system_prompt
from toolmaster.protocol.parser import ParsedTurn, ParseError, ToolCall, parse_turn
from toolmaster.protocol.stats import EpisodeStats

__all__ = [
    "CHAT_TEMPLATE", "SPECIAL_TOKENS", "TAG_TOKENS", "render_text", "build_messages", "system_prompt",
    "ParsedTurn", "ParseError", "ToolCall", "parse_turn", "EpisodeStats",
]
