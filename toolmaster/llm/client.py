"""One chat client for every OpenAI-compatible endpoint the framework calls (teacher, judge, simulator)."""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


class EndpointError(RuntimeError):
    """The endpoint could not be reached or answered with an error; the message names the endpoint."""


class ChatClient:
    """Synchronous chat completions against ``cfg.base_url`` (an EndpointConfig)."""

    def __init__(self, cfg):
        if not cfg.base_url:
            raise ValueError("the endpoint has no base_url (set e.g. synth.endpoint.base_url=http://HOST:PORT/v1)")
        from openai import OpenAI

        self.cfg = cfg
        self._client = OpenAI(base_url=cfg.base_url, api_key=os.environ.get(cfg.api_key_env) or "EMPTY",
                              timeout=cfg.timeout_s, max_retries=cfg.max_retries)

    def chat(self, messages: list[dict], *, max_tokens: int | None = None, temperature: float | None = None,
             stop: list[str] | None = None, json_mode: bool = False, seed: int | None = None) -> str:
        kwargs = {"model": self.cfg.model, "messages": messages,
                  "max_tokens": max_tokens or self.cfg.max_tokens,
                  "temperature": self.cfg.temperature if temperature is None else temperature}
        if stop:
            kwargs["stop"] = stop
        if seed is not None:
            kwargs["seed"] = seed
        if json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        try:
            response = self._client.chat.completions.create(**kwargs)
        except Exception as err:  # openai raises many kinds; one error type with the endpoint named
            raise EndpointError(f"{self.cfg.base_url} (model {self.cfg.model!r}): {type(err).__name__}: {err}") from err
        return response.choices[0].message.content or ""

    def call_function(self, messages: list[dict], function: dict, *, max_tokens: int | None = None,
                      temperature: float | None = None) -> tuple[str | None, str]:
        """Ask for one call of ``function`` (an OpenAI function schema), forced with ``tool_choice``.

        Returns the call's arguments as the endpoint wrote them (a JSON string, unparsed; None when the reply
        holds no tool call) and the reply's text content."""
        kwargs = {"model": self.cfg.model, "messages": messages,
                  "max_tokens": max_tokens or self.cfg.max_tokens,
                  "temperature": self.cfg.temperature if temperature is None else temperature,
                  "tools": [{"type": "function", "function": function}],
                  "tool_choice": {"type": "function", "function": {"name": function["name"]}}}
        try:
            response = self._client.chat.completions.create(**kwargs)
        except Exception as err:  # as in chat(): one error type with the endpoint named
            raise EndpointError(f"{self.cfg.base_url} (model {self.cfg.model!r}): {type(err).__name__}: {err}") from err
        message = response.choices[0].message
        calls = message.tool_calls or []
        return (calls[0].function.arguments if calls else None), message.content or ""
