"""agent.device: what a board says it is, from the /proc/cpuinfo texts real boards print."""

from __future__ import annotations

import pytest

from agent.device import cpu_model

PI4_64 = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x0
CPU part\t: 0xd08
CPU revision\t: 3

Hardware\t: BCM2835
Revision\t: c03114
Serial\t\t: 100000002a5b7c9e
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
PI4_32 = PI4_64.replace("processor\t: 0\n", "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\n")
PI5 = PI4_64.replace("0xd08", "0xd0b").replace("Raspberry Pi 4 Model B Rev 1.4", "Raspberry Pi 5 Model B Rev 1.0")
ORIN = """processor\t: 0
model name\t: ARMv8 Processor rev 1 (v8l)
BogoMIPS\t: 62.50
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd42
CPU revision\t: 1
"""
X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme de
"""
ODROID_N2 = "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: {part}\n\n"
                    for i, part in enumerate(["0xd03"] * 2 + ["0xd09"] * 4)) + "Hardware\t: Hardkernel ODROID-N2\n"
UNKNOWN_ARM = "processor\t: 0\nCPU implementer\t: 0x61\nCPU part\t: 0x022\n\nHardware\t: Some SoC\n"


@pytest.mark.parametrize("text, expected", [
    (PI4_64, "Cortex-A72 (Raspberry Pi 4 Model B)"),
    (PI4_32, "Cortex-A72 (Raspberry Pi 4 Model B)"),
    (PI5, "Cortex-A76 (Raspberry Pi 5 Model B)"),
    (ORIN, "Cortex-A78AE"),
    (ODROID_N2, "Cortex-A53 + Cortex-A73 (Hardkernel ODROID-N2)"),
    (X86, "AMD EPYC 7B13"),
    (UNKNOWN_ARM, "Some SoC"),
], ids=["pi4-arm64", "pi4-armv7", "pi5", "jetson-orin", "odroid-n2-big-little", "x86", "unknown-arm"])
def test_cpu_model_names_the_core_not_the_pi_hardware_line(text, expected):
    assert cpu_model(text) == expected


def test_cpu_model_falls_back_to_platform_without_cpuinfo():
    assert cpu_model("") != ""
    assert cpu_model() != ""


def test_two_revisions_of_one_board_report_the_same_cpu():
    """cpu_model is part of the fingerprint: a Rev 1.1 and a Rev 1.4 Pi 4 time alike and must share one."""
    assert cpu_model(PI4_64.replace("Rev 1.4", "Rev 1.1")) == cpu_model(PI4_64)
