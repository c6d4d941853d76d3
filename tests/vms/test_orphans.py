"""``GET /azure/orphans`` on a service without Azure (the listing itself: tests/providers/test_azure.py)."""

from __future__ import annotations

from support.service import Service


class TestListAzureOrphans:
    async def test_without_azure_is_a_conflict(self, service: Service) -> None:
        response = await service.client.get("/azure/orphans")
        assert response.status_code == 409
        assert response.json()["error"] == "azure_not_configured"
        assert "VMJOURNAL_AZURE_SUBSCRIPTION_ID" in response.json()["message"]
