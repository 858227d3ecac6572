"""Zeroconf discovery on the loopback interface: advertised agents are found, and `farmctl devices`
merges them with the inventory."""

from __future__ import annotations

import json
import subprocess
import sys


def test_discovery_finds_advertised_agents_and_devices_merges_them(start_agent, tmp_path):
    from controller.fleet.discovery import discover

    start_agent("--advertise", "--device-class", "rpi5", name="found-me")
    found = {a.name: a for a in discover(timeout=10, interfaces=["127.0.0.1"], expect={"found-me"})}
    assert "found-me" in found
    agent = found["found-me"]
    assert agent.device_class == "rpi5" and "onnxruntime" in agent.backends and agent.address.startswith("127.0.0.1:")
    inv = tmp_path / "inventory.yaml"
    inv.write_text("devices:\n  local:\n    embedded: true\n")
    out = subprocess.run([sys.executable, "-m", "controller", "--inventory", str(inv), "devices", "--interface",
                          "127.0.0.1", "--discover-seconds", "3", "--json"], capture_output=True, text=True,
                         timeout=120)
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["found-me"]["source"] == "discovered" and rows["found-me"]["status"] == "ok"
    assert rows["found-me"]["class"] == "rpi5" and rows["local"]["source"] == "inventory"
