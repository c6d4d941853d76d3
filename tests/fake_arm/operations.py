"""Long-running operations: started by a PUT or DELETE, polled by the SDK until they end.

An operation answers ``InProgress`` for ``polls`` polls, then ends (``Failed`` if a test made it
fail). Ending one updates its resource's ``provisioningState``, or removes a deleted resource
group with everything in it. A held operation stays in progress until the test releases it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from fake_arm.wire import JSON, Answer, ArmError


@dataclass
class Operation:
    id: str
    kind: str
    path: str | None  # resource path (lower case); None for a delete of a resource group
    polls_left: int
    held: bool
    status: str = "InProgress"
    error: JSON | None = None
    polled: int = 0


@dataclass
class Operations:
    """Every operation the fake still knows, and the test's instructions for new ones."""

    resources: dict[str, JSON]
    known: dict[str, Operation] = field(default_factory=dict)
    held_kinds: set[str] = field(default_factory=set)
    failing: dict[str, JSON] = field(default_factory=dict)
    # Held when ARM forgot them: still in progress, no longer reachable by their id.
    forgotten_held: list[Operation] = field(default_factory=list)

    def start(self, kind: str, path: str, *, polls: int) -> Operation:
        op = Operation(uuid.uuid4().hex, kind, path, polls, held=kind in self.held_kinds)
        if kind in self.failing:
            op.error = self.failing.pop(kind)
        self.known[op.id] = op
        return op

    def finish(self, op: Operation) -> None:
        op.status = "Failed" if op.error else "Succeeded"
        if op.kind == "resourcegroups":
            assert op.path is not None
            for path in [p for p in self.resources if p == op.path or p.startswith(op.path + "/")]:
                del self.resources[path]
            return
        resource = self.resources.get(op.path or "")
        if resource is not None:
            resource["properties"]["provisioningState"] = op.status

    def poll(self, op_id: str) -> Operation:
        """Count one poll of ``op_id`` and end it once its polls are used up; 404 for an unknown id."""
        op = self.known.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' was not found.")
        op.polled += 1
        if op.status == "InProgress" and not op.held:
            op.polls_left -= 1
            if op.polls_left < 0:
                self.finish(op)
        return op

    def release(self, kind: str) -> None:
        self.held_kinds.discard(kind)
        for op in self.known.values():
            if op.kind == kind and op.held:
                op.held = False
                self.finish(op)

    def forget(self) -> None:
        """End what is not held, then forget everything, as ARM does some time after an operation ended."""
        for op in self.known.values():
            if op.status == "InProgress" and not op.held:
                self.finish(op)
        # Held ones keep their resource in progress; release() would find nothing to end.
        self.forgotten_held = [op for op in self.known.values() if op.held]
        self.known.clear()

    def finish_forgotten(self) -> None:
        for op in self.forgotten_held:
            op.held = False
            self.finish(op)
        self.forgotten_held = []

    def polled(self, kind: str) -> int:
        return sum(op.polled for op in self.known.values() if op.kind == kind)


def async_operation_answer(op: Operation, retry_after: str) -> Answer:
    """A poll of an ``Azure-AsyncOperation`` URL: always 200, the state in ``status``."""
    body: JSON = {"name": op.id, "status": op.status, "startTime": "2026-11-24T08:00:00Z"}
    if op.error and op.status == "Failed":
        body["error"] = op.error
    # A held operation is polled by a real client: keep it from spinning.
    return 200, body, {"Retry-After": "1" if op.held else retry_after}


def location_answer(op: Operation, poll_url: str, retry_after: str) -> Answer:
    """A poll of a ``Location`` URL: 202 while in progress, 200 once done."""
    if op.status == "InProgress":
        return 202, None, {"Location": poll_url, "Retry-After": retry_after}
    return 200, None, {}
