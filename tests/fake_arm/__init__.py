"""A fake Azure Resource Manager served over HTTP on loopback (see ``server``)."""

from fake_arm.server import FakeARM
from fake_arm.wire import ArmError, Recorded, kind_of

__all__ = ["ArmError", "FakeARM", "Recorded", "kind_of"]
