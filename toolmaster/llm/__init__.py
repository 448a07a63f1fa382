"""Clients of OpenAI-compatible LLM endpoints: the teacher, the judge and the tool simulator."""
