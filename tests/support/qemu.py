"""Shared by the QEMU tests: one base image per test session, built on first use."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from vmjournal.config import QemuSettings
from vmjournal.providers.qemu.image import BaseImage, ensure_base_image


def session_images_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One directory per session, whichever test module asks first: the build's lock and cache
    # make every later caller reuse the image.
    return tmp_path_factory.getbasetemp() / "qemu-images"


async def build_session_image(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, BaseImage]:
    images = session_images_dir(tmp_path_factory)
    logging.getLogger("vmjournal").setLevel(logging.INFO)
    image = await ensure_base_image(QemuSettings(_env_file=None, images_dir=images), images.parent)
    return images, image
