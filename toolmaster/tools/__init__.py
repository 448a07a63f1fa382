"""Tools: OpenAI function schemas plus executors, and the sandbox that runs Python tool source."""
from toolmaster.tools.base import PythonExecutor, Tool, ToolResult, ToolRunner
from toolmaster.tools.sandbox import SandboxPool

__all__ = ["PythonExecutor", "Tool", "ToolResult", "ToolRunner", "SandboxPool"]
