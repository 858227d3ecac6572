"""Jetson telemetry (agent/jetson.py) on published tegrastats lines of each JetPack style
(tests/agent/data/tegrastats_published.txt names each line's source), nvpmodel's power modes (an excerpt of
the Xavier `nvpmodel -q --verbose` output in rbonghi/jetson_stats tests/nvpmodel), devfreq GPU clocks, and
the throttle judgement that must not call a power mode's caps throttling."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import jetson, telemetry

DATA = Path(__file__).parent / "data"


def published() -> dict[str, dict]:
    lines = (DATA / "tegrastats_published.txt").read_text().splitlines()
    boards = {}
    for source, line in zip(lines[1::2], lines[2::2]):
        boards[source.lstrip("# ").split(",")[0].split(" (")[0]] = jetson.parse_tegrastats(line)
    return boards


def test_each_jetpack_style_gives_the_board_power_and_lower_case_temperatures():
    got = published()
    assert list(got) == ["AGX Xavier", "Xavier NX", "Jetson Nano", "AGX Orin"]
    xavier, nx, nano, orin = got.values()
    # AGX Xavier (JetPack 4): plain rail names, module power = the six rails
    assert xavier["input_rails"] == ["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"]
    assert xavier["input_mw"] == 463 + 618 + 2936 + 0 + 309 + 3306 and xavier["temps_c"]["cpu"] == 31.5
    assert nx["input_rails"] == ["VDD_IN"] and nx["input_mw"] == 5297 and nx["gpu_mhz"] == 114
    assert nx["temps_c"]["gpu"] == 39.5 and nx["temps_c"]["tdiode"] == 39.25 and len(nx["cpus"]) == 6
    assert nano["input_rails"] == ["POM_5V_IN"] and nano["input_mw"] == 4520 and nano["ram_used_mb"] == 1180
    # AGX Orin has no VDD_IN: the module's three rails, never the carrier's 5 V rail alone
    assert orin["input_rails"] == ["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0"]
    assert orin["input_mw"] == 5139 + 3268 + 5500 and orin["rails_mw"]["VIN_SYS_5V0"] == {"now": 5500, "avg": 5500}
    assert orin["temps_c"] == {"cpu": 52.968, "soc2": 48.406, "soc0": 49.531, "gpu": 47.625}
    assert (orin["gpu_load_pct"], orin["gpu_mhz"], len(orin["cpus"])) == (12, 1300, 12)
    # the same sensor has the same key on JetPack 4/5 (CPU@) and 6/7 (cpu@)
    assert "cpu" in xavier["temps_c"] and "cpu" in orin["temps_c"] and "CPU" not in xavier["temps_c"]


def test_recorded_orin_nano_and_nano_lines():
    orin = jetson.parse_tegrastats((DATA / "tegrastats_orin.txt").read_text())
    assert (orin["ram_used_mb"], orin["ram_total_mb"]) == (2448, 7620)
    assert orin["cpus"][:2] == [{"load_pct": 12, "mhz": 1510}, {"load_pct": 5, "mhz": 1510}] and orin["cpus"][4] is None
    assert (orin["gpu_load_pct"], orin["gpu_mhz"], orin["emc_load_pct"]) == (67, 624, 0)
    assert orin["temps_c"]["gpu"] == 46.125 and orin["temps_c"]["tj"] == 47.187
    assert orin["rails_mw"]["VDD_IN"] == {"now": 7421, "avg": 6012} and orin["input_mw"] == 7421
    nano = jetson.parse_tegrastats((DATA / "tegrastats_nano.txt").read_text())
    assert nano["input_mw"] == 3028 and nano["rails_mw"]["POM_5V_GPU"] == {"now": 80, "avg": 80}
    assert nano["temps_c"]["cpu"] == 39.5 and nano["gpu_mhz"] == 921 and len(nano["cpus"]) == 4


def test_a_sensor_that_is_off_is_dropped():
    got = jetson.parse_tegrastats("CV0@-256C CPU@45.5C GPU@-256C VDD_IN 100mW/100mW")
    assert got["temps_c"] == {"cpu": 45.5}


def test_nvpmodel_modes_and_query():
    modes = jetson.parse_nvpmodel_modes((DATA / "nvpmodel_xavier_verbose.txt").read_text())
    assert modes[0] == {"name": "MAXN", "cpu_max_khz": {}, "gpu_max_hz": None}      # no-limit caps left out
    assert modes[2] == {"name": "MODE_15W", "cpu_max_khz": {0: 1200000, 2: 1200000}, "gpu_max_hz": 670000000}
    conf = "< PARAM TYPE=CLOCK NAME=CPU_A78_0 >\nMAX_FREQ /sys/devices/system/cpu/cpu0/cpufreq/scaling_max_freq\n" \
           "< POWER_MODEL ID=1 NAME=15W >\nCPU_A78_0 MAX_FREQ 1113600\nGPU MAX_FREQ -1\n"   # /etc/nvpmodel.conf form
    assert jetson.parse_nvpmodel_modes(conf) == {1: {"name": "15W", "cpu_max_khz": {0: 1113600}, "gpu_max_hz": None}}
    assert jetson.parse_nvpmodel_query("NV Power Mode: MODE_15W\n2\n") == {"name": "MODE_15W", "id": 2}
    assert jetson.parse_nvpmodel_query("nvpmodel: command not found") == {}
    assert jetson.mode_cpu_cap({"cpu_max_khz": {0: 1200000, 4: 1500000}}, 5) == 1500000


def test_gpu_clock_from_devfreq(tmp_path):
    gpu = tmp_path / "17000000.ga10b"
    gpu.mkdir()
    (gpu / "cur_freq").write_text("305000000\n")
    (gpu / "max_freq").write_text("1300500000\n")
    (gpu / "available_frequencies").write_text("305000000 612000000 1300500000\n")
    (tmp_path / "3d00000.ufshc").mkdir()            # another devfreq device: not the GPU
    (tmp_path / "3d00000.ufshc" / "cur_freq").write_text("1\n")
    assert jetson.gpu_devfreq(tmp_path) == [{"name": "17000000.ga10b", "cur_hz": 305000000,
                                             "max_hz": 1300500000, "hw_max_hz": 1300500000}]


def snapshot(cpu_max_khz: int, gpu_max_hz: int, mode: dict | None = None) -> dict:
    """Two Denver CPUs (2.27 GHz hardware max) and the Xavier GPU (1.377 GHz), as read_telemetry() has them."""
    snap = {"thermal": [], "throttled_raw": "",
            "cpufreq": [{"cpu": c, "cur_khz": cpu_max_khz, "max_khz": cpu_max_khz, "hw_max_khz": 2265600}
                        for c in (0, 2)],
            "gpu_devfreq": [{"name": "17000000.gv11b", "cur_hz": gpu_max_hz, "max_hz": gpu_max_hz,
                             "hw_max_hz": 1377000000}]}
    if mode is not None:
        snap["power_mode"] = mode
    return snap


def test_a_power_mode_below_maxn_is_not_throttling():
    modes = jetson.parse_nvpmodel_modes((DATA / "nvpmodel_xavier_verbose.txt").read_text())
    mode_15w = {"name": "MODE_15W", "id": 2, **modes[2], "caps_known": True}
    maxn = {"name": "MAXN", "id": 0, **modes[0], "caps_known": True}
    assert not telemetry.is_throttled(snapshot(1200000, 670000000, mode_15w))     # the mode's own caps
    assert telemetry.is_throttled(snapshot(1200000, 670000000, maxn))             # the same caps under MAXN are
    assert telemetry.is_throttled(snapshot(1000000, 670000000, mode_15w))         # below the mode's CPU cap
    assert telemetry.is_throttled(snapshot(1200000, 420000000, mode_15w))         # below the mode's GPU cap
    assert telemetry.is_throttled(snapshot(1200000, 670000000))                   # not a Jetson: hardware max
    unknown = {"name": "MODE_15W", "id": 2, "cpu_max_khz": {}, "gpu_max_hz": None, "caps_known": False}
    assert not telemetry.is_throttled(snapshot(1200000, 670000000, unknown))      # caps unreadable: not judged
    assert telemetry.is_throttled({**snapshot(1200000, 670000000, unknown),
                                   "thermal": [{"name": "CPU-therm", "temp_c": 96.0, "passive_c": 99.0}]})


@pytest.mark.parametrize("line", ["", "garbage", "RAM 1/2MB"])
def test_lines_without_rails_have_no_power(line):
    got = jetson.parse_tegrastats(line)
    assert got["input_mw"] is None and got["input_rails"] == []
