//! Telling audio from everything else by a file's first bytes, so that a PDF, an HTML error
//! page or an empty placeholder saved as `.wav` is caught before anything is sent.
//!
//! Only the leading bytes are looked at ([`SNIFF_LEN`] of them): enough for every container's
//! signature, and cheap enough to do for a million files.

use std::fmt;

/// How many leading bytes [`sniff`] wants to see (fewer is fine for a short file).
pub const SNIFF_LEN: usize = 64;

/// An audio format recognised by its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// RIFF/RF64/BW64 WAVE.
    Wav,
    /// MPEG audio (layer III, and layers I/II): an ID3 tag or a bare frame sync.
    Mp3,
    /// AAC in ADTS frames.
    Aac,
    /// Native FLAC.
    Flac,
    /// Opus in Ogg.
    Opus,
    /// Vorbis in Ogg.
    Vorbis,
    /// Ogg with another codec (Speex, FLAC, …).
    Ogg,
    /// ISO base media: M4A, MP4, 3GP, MOV (an `ftyp` box).
    Mp4,
    /// EBML: WebM or Matroska.
    WebM,
    /// AMR narrow-band (`#!AMR`).
    Amr,
    /// AMR wide-band (`#!AMR-WB`).
    AmrWb,
    /// AIFF and AIFF-C.
    Aiff,
    /// Apple Core Audio Format.
    Caf,
    /// Windows Media Audio (an ASF container).
    Wma,
    /// Sun/NeXT `.au`.
    Au,
}

/// The first 16 bytes of every ASF file (the ASF header object's GUID).
const ASF_GUID: [u8; 16] = [
    0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE, 0x6C,
];

/// Recognises an audio format from a file's leading bytes (see [`SNIFF_LEN`]).
pub fn sniff(head: &[u8]) -> Option<AudioFormat> {
    use AudioFormat::*;
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    if (at(0, b"RIFF") || at(0, b"RF64") || at(0, b"BW64")) && at(8, b"WAVE") {
        Some(Wav)
    } else if at(0, b"ID3") {
        // An ID3v2 tag almost always precedes MPEG audio; other codecs rarely carry one.
        Some(Mp3)
    } else if at(0, b"fLaC") {
        Some(Flac)
    } else if at(0, b"OggS") {
        Some(ogg_codec(head))
    } else if at(4, b"ftyp") {
        Some(Mp4)
    } else if at(0, &[0x1A, 0x45, 0xDF, 0xA3]) {
        Some(WebM)
    } else if at(0, b"#!AMR-WB\n") {
        Some(AmrWb)
    } else if at(0, b"#!AMR\n") || at(0, b"#!AMR_MC1.0\n") {
        Some(Amr)
    } else if at(0, b"FORM") && (at(8, b"AIFF") || at(8, b"AIFC")) {
        Some(Aiff)
    } else if at(0, b"caff") {
        Some(Caf)
    } else if at(0, &ASF_GUID) {
        Some(Wma)
    } else if at(0, b".snd") {
        Some(Au)
    } else {
        mpeg_frame(head)
    }
}

/// The codec of an Ogg stream, from the first packet of its first page.
fn ogg_codec(head: &[u8]) -> AudioFormat {
    // The page header is 27 bytes, then one byte per segment; the first packet follows.
    let packet = head
        .get(26)
        .and_then(|&segments| head.get(27 + usize::from(segments)..))
        .unwrap_or_default();
    if packet.starts_with(b"OpusHead") {
        AudioFormat::Opus
    } else if packet.starts_with(b"\x01vorbis") {
        AudioFormat::Vorbis
    } else {
        AudioFormat::Ogg
    }
}

/// A bare MPEG audio or ADTS frame header (no ID3 tag): 11 or 12 sync bits, then fields that
/// are checked for reserved values so that random bytes starting with 0xFF rarely pass.
fn mpeg_frame(head: &[u8]) -> Option<AudioFormat> {
    let [0xFF, b1, b2, ..] = *head else {
        return None;
    };
    if b1 & 0xE0 != 0xE0 {
        return None;
    }
    let layer = (b1 >> 1) & 0b11;
    if layer == 0 {
        // ADTS: 12 sync bits, MPEG-2/4 id, layer 00; sampling index 13..15 is reserved.
        let adts = b1 & 0xF6 == 0xF0 && (b2 >> 2) & 0x0F < 13;
        return adts.then_some(AudioFormat::Aac);
    }
    let version = (b1 >> 3) & 0b11;
    let bitrate = b2 >> 4;
    let sample_rate = (b2 >> 2) & 0b11;
    (version != 0b01 && bitrate != 0x0F && sample_rate != 0b11).then_some(AudioFormat::Mp3)
}

impl AudioFormat {
    /// Every format, for listing what is accepted.
    pub const ALL: [AudioFormat; 15] = [
        AudioFormat::Wav,
        AudioFormat::Mp3,
        AudioFormat::Aac,
        AudioFormat::Flac,
        AudioFormat::Opus,
        AudioFormat::Vorbis,
        AudioFormat::Ogg,
        AudioFormat::Mp4,
        AudioFormat::WebM,
        AudioFormat::Amr,
        AudioFormat::AmrWb,
        AudioFormat::Aiff,
        AudioFormat::Caf,
        AudioFormat::Wma,
        AudioFormat::Au,
    ];

    /// The name a person knows it by.
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "WAV",
            AudioFormat::Mp3 => "MP3",
            AudioFormat::Aac => "AAC",
            AudioFormat::Flac => "FLAC",
            AudioFormat::Opus => "Ogg Opus",
            AudioFormat::Vorbis => "Ogg Vorbis",
            AudioFormat::Ogg => "Ogg",
            AudioFormat::Mp4 => "M4A/MP4",
            AudioFormat::WebM => "WebM/Matroska",
            AudioFormat::Amr => "AMR",
            AudioFormat::AmrWb => "AMR-WB",
            AudioFormat::Aiff => "AIFF",
            AudioFormat::Caf => "CAF",
            AudioFormat::Wma => "WMA",
            AudioFormat::Au => "AU",
        }
    }

    /// File extensions (lower case, without the dot) that files of this format carry.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            AudioFormat::Wav => &["wav", "wave"],
            AudioFormat::Mp3 => &["mp3", "mp2", "mpga"],
            AudioFormat::Aac => &["aac"],
            AudioFormat::Flac => &["flac"],
            AudioFormat::Opus => &["opus", "ogg", "oga"],
            AudioFormat::Vorbis => &["ogg", "oga"],
            AudioFormat::Ogg => &["ogg", "oga", "spx"],
            AudioFormat::Mp4 => &["m4a", "mp4", "m4b", "3gp", "3g2", "mov"],
            AudioFormat::WebM => &["webm", "mka", "mkv"],
            AudioFormat::Amr => &["amr"],
            AudioFormat::AmrWb => &["awb", "amr"],
            AudioFormat::Aiff => &["aif", "aiff", "aifc"],
            AudioFormat::Caf => &["caf"],
            AudioFormat::Wma => &["wma", "asf"],
            AudioFormat::Au => &["au", "snd"],
        }
    }

    /// The media type to label an upload with.
    pub fn mime_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Aac => "audio/aac",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Opus | AudioFormat::Vorbis | AudioFormat::Ogg => "audio/ogg",
            AudioFormat::Mp4 => "audio/mp4",
            AudioFormat::WebM => "audio/webm",
            AudioFormat::Amr => "audio/amr",
            AudioFormat::AmrWb => "audio/amr-wb",
            AudioFormat::Aiff => "audio/aiff",
            AudioFormat::Caf => "audio/x-caf",
            AudioFormat::Wma => "audio/x-ms-wma",
            AudioFormat::Au => "audio/basic",
        }
    }

    /// Whether a file extension (any case, without the dot) is one this format is saved under.
    pub fn has_extension(self, extension: &str) -> bool {
        self.extensions()
            .iter()
            .any(|e| e.eq_ignore_ascii_case(extension))
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::AudioFormat::*;
    use super::*;

    /// Pads a signature with zeros to a realistic head length.
    fn head(bytes: &[u8]) -> Vec<u8> {
        let mut v = bytes.to_vec();
        v.resize(SNIFF_LEN.max(bytes.len()), 0);
        v
    }

    fn ogg_page(packet: &[u8]) -> Vec<u8> {
        let mut v = b"OggS\x00\x02".to_vec();
        v.resize(26, 0);
        v.push(1); // one segment
        v.push(packet.len() as u8);
        v.extend_from_slice(packet);
        head(&v)
    }

    #[test]
    fn every_supported_container_is_recognised_by_its_signature() {
        let cases: Vec<(Vec<u8>, AudioFormat)> = vec![
            (head(b"RIFF\x24\x08\x00\x00WAVEfmt "), Wav),
            (head(b"RF64\xff\xff\xff\xffWAVEds64"), Wav),
            (head(b"ID3\x04\x00\x00\x00\x00\x00\x21"), Mp3),
            (head(&[0xFF, 0xFB, 0x90, 0x64]), Mp3),
            (head(&[0xFF, 0xF3, 0x18, 0xC4]), Mp3),
            (head(&[0xFF, 0xF1, 0x50, 0x80]), Aac),
            (head(b"fLaC\x00\x00\x00\x22"), Flac),
            (ogg_page(b"OpusHead\x01\x01"), Opus),
            (ogg_page(b"\x01vorbis\x00\x00"), Vorbis),
            (ogg_page(b"Speex   1.2"), Ogg),
            (head(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00"), Mp4),
            (head(b"\x00\x00\x00\x18ftyp3gp4"), Mp4),
            (head(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x86]), WebM),
            (head(b"#!AMR\n\x3c"), Amr),
            (head(b"#!AMR-WB\n"), AmrWb),
            (head(b"FORM\x00\x01\x35\x72AIFFCOMM"), Aiff),
            (head(b"FORM\x00\x01\x35\x72AIFCFVER"), Aiff),
            (head(b"caff\x00\x01\x00\x00desc"), Caf),
            (head(&ASF_GUID), Wma),
            (head(b".snd\x00\x00\x00\x18"), Au),
        ];
        for (bytes, expected) in cases {
            assert_eq!(sniff(&bytes), Some(expected), "{:02x?}", &bytes[..12]);
        }
    }

    #[test]
    fn text_documents_and_other_binaries_are_not_audio() {
        for bytes in [
            &b"Hello, this is a transcript, not audio."[..],
            b"<!DOCTYPE html><html>",
            b"%PDF-1.7\n",
            b"PK\x03\x04\x14\x00",
            b"RIFF\x24\x08\x00\x00AVI LIST",
            b"\xFF\xD8\xFF\xE0\x00\x10JFIF",
            b"\x89PNG\r\n\x1a\n",
            b"FORM\x00\x00\x00\x00ILBM",
            b"",
            b"\xFF",
            b"\x00\x00\x00\x00",
        ] {
            assert_eq!(sniff(&head(bytes)), None, "{bytes:?}");
        }
    }

    #[test]
    fn bytes_that_only_look_like_an_mpeg_frame_sync_are_rejected() {
        // Reserved version (01), reserved bitrate (1111), reserved sample rate (11).
        assert_eq!(sniff(&head(&[0xFF, 0xEB, 0x90, 0x00])), None);
        assert_eq!(sniff(&head(&[0xFF, 0xFB, 0xF0, 0x00])), None);
        assert_eq!(sniff(&head(&[0xFF, 0xFB, 0x9C, 0x00])), None);
        // 0xFF followed by a byte without the sync bits.
        assert_eq!(sniff(&head(&[0xFF, 0x00, 0x00, 0x00])), None);
    }

    #[test]
    fn a_short_file_is_sniffed_without_reading_past_its_end() {
        assert_eq!(sniff(b"fLaC"), Some(Flac));
        assert_eq!(sniff(b"RIFF\x00\x00\x00\x00WAV"), None);
        assert_eq!(sniff(b"OggS"), Some(Ogg));
        assert_eq!(sniff(b"#!AMR"), None);
    }

    #[test]
    fn extensions_belong_to_their_formats_in_any_case() {
        assert!(Wav.has_extension("WAV"));
        assert!(Opus.has_extension("ogg"));
        assert!(!Vorbis.has_extension("opus"));
        assert!(Mp4.has_extension("m4a"));
        assert!(!Mp3.has_extension("wav"));
        for format in AudioFormat::ALL {
            assert!(!format.extensions().is_empty(), "{format}");
            assert!(format.mime_type().starts_with("audio/"), "{format}");
        }
    }
}
