import pytest

from tests.integration.fleets import FLEETS


@pytest.fixture
def fleets(ray_local):
    """Shared fleets (tests/integration/fleets.py); a test passes ``fleets.get(cfg, model_dir)`` to a driver."""
    return FLEETS
