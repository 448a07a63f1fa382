"""Tools: OpenAI function schemas plus executors (tools.spec), the runner that executes calls (tools.base)
and the sandbox that runs Python tool source (tools.sandbox).

The package exports only the plain data types: a module the runner depends on (toolserver.client) imports
tools.spec, which runs this file first, so re-exporting the runner here would be an import cycle.
"""
from toolmaster.tools.spec import FinishExecutor, PythonExecutor, RestExecutor, Tool, ToolResult, VirtualApiExecutor

__all__ = ["FinishExecutor", "PythonExecutor", "RestExecutor", "Tool", "ToolResult", "VirtualApiExecutor"]
