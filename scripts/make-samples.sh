#!/usr/bin/env bash
# Usage: scripts/make-samples.sh   — regenerates samples/calls/ (short spoken recordings in
# several formats, each well under 100 KB) with espeak-ng, sox and opusenc.
# Needs: apt-get install espeak-ng sox libsox-fmt-all opus-tools
# The recordings are committed; rerun this only to change them.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in espeak-ng sox opusenc; do
    command -v "$tool" >/dev/null || {
        echo "missing $tool: apt-get install espeak-ng sox libsox-fmt-all opus-tools" >&2
        exit 1
    }
done

out=samples/calls
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"

# speak NAME VOICE TEXT: a telephone-quality (8 kHz mono) WAV in $tmp.
speak() {
    espeak-ng -v "$2" -s 165 -w "$tmp/$1.raw.wav" "$3"
    sox "$tmp/$1.raw.wav" -r 8000 -c 1 -b 16 "$tmp/$1.wav"
}

speak 0001 en-us "Thank you for calling Voyc support, this is Ann. How can I help you today?"
speak 0002 en-gb "Hello, I would like to check on the refund for my last order, please."
speak 0003 en-us+m3 "Good morning, this is Ben from billing. I am returning your call about the invoice."
speak 0004 en-gb+f3 "Hi Ben, the team meeting moved to three o'clock. See you there."
speak 0005 en-us+f2 "Your order has shipped and should arrive on Thursday. Anything else I can do?"
speak 0006 en-us+m1 "I would like to cancel my subscription at the end of this month."
speak 0007 en-gb+m2 "Thanks for holding. I have escalated this to our technical team."

sox "$tmp/0001.wav" -e u-law "$out/0001.wav"           # WAV, G.711 u-law, as PBXs record
sox "$tmp/0002.wav" -C 16 "$out/0002.mp3"               # MP3, 16 kbit/s
sox "$tmp/0003.wav" "$out/0003.flac"                    # FLAC
opusenc --quiet --bitrate 12 "$tmp/0004.wav" "$out/0004.opus"  # Ogg Opus
sox "$tmp/0005.wav" -C 0 "$out/0005.ogg"                # Ogg Vorbis
sox "$tmp/0006.wav" -t amr-nb "$out/0006.amr"           # AMR narrow-band
sox "$tmp/0007.wav" -b 8 "$out/0007.aiff"               # AIFF, 8-bit

# For samples/bad-manifest.csv: an MP3 named .wav (a warning), an empty file, a text file.
cp "$out/0002.mp3" "$out/mislabelled.wav"
: > "$out/empty.wav"
printf 'Transcript of call 0003: the customer asked about an invoice.\n' > "$out/transcript.txt"

ls -l "$out"
for f in "$out"/0*; do
    size=$(stat -c %s "$f")
    [ "$size" -lt 100000 ] || { echo "$f is $size bytes, over 100 KB" >&2; exit 1; }
done
