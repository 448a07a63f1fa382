"""StableToolBench-format queries written by the tests (the fixture tool of tests/fixtures/stabletoolbench)."""
import json
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "stabletoolbench"
API = {"category_name": "Travel", "tool_name": "Sky Tides", "api_name": "Get Tide Times",
       "api_description": "Tide times for a harbour, for the next days.",
       "required_parameters": [{"name": "harbour", "type": "STRING", "description": "harbour name",
                                "default": "Brest"}],
       "optional_parameters": [{"name": "days", "type": "NUMBER", "description": "", "default": "2"}],
       "method": "GET", "template_response": {"tides": ["list of str with length 2"]}}
HARBOURS = ["Brest", "Roscoff", "Saint-Malo", "Cherbourg", "Dieppe", "Calais", "Lorient", "Vannes", "Nantes", "Sete"]


def query(query_id: int, harbour: str) -> dict:
    return {"query": f"When are the tides at {harbour} tomorrow?", "query_id": query_id, "api_list": [API],
            "relevant APIs": [["Sky Tides", "Get Tide Times"]]}


def write_queries(path: Path, ids) -> Path:
    """A ToolBench query file of the given ids."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([query(i, HARBOURS[i % len(HARBOURS)]) for i in ids]))
    return path
