#!/usr/bin/env bash
# Installs the Debian packages Segue needs (run as root on Debian): ffmpeg for decoding and
# encoding audio, prometheus for promtool and the SLO integration test, PostgreSQL and Chromium
# for Segue Studio's tests.
set -euo pipefail
need=()
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# fluidsynth and two General MIDI soundfonts render the MIDI set and its tests (issue 17).
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)
# openmpt123 renders the tracker modules of the training corpus (`make data`).
command -v openmpt123 >/dev/null 2>&1 || need+=(openmpt123)
# Rubber Band stretches the tempo copies of the structure evaluation (bench/eval_transforms.py).
command -v rubberband >/dev/null 2>&1 || need+=(rubberband-cli)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)
[ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] || need+=(timgm6mb-soundfont)
# Segue Studio: PostgreSQL for its shared-database tests, Chromium for its browser tests.
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing Debian packages: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
