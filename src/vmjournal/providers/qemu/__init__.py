"""The local provider: Linux guests under QEMU, with a base image built from Debian on first use."""
