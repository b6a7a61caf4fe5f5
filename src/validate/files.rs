//! The checks on a row's audio file: it exists, is a regular readable file, is not empty, is
//! at most 5 GiB, and is audio by its first bytes. Only those bytes are read, and the file
//! type is taken from metadata before opening, and again from the open descriptor (a named
//! pipe put in place of the file meanwhile never blocks the run: see [`open_regular`]).

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::descriptors::out_of_descriptors;

use super::sniff::{AudioFormat, SNIFF_LEN, sniff};

/// The most a single presigned upload takes (S3's limit for one PUT or POST).
pub const MAX_FILE_BYTES: u64 = 5 << 30;

/// Which file a path names, so that two spellings of one file (`calls/a.wav`,
/// `./calls/a.wav`, a hard link) are known to be the same; or which object a URL names.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum FileId {
    #[cfg(unix)]
    Inode { device: u64, inode: u64 },
    /// Its canonical path (no inode numbers to rely on here).
    #[cfg(not(unix))]
    Canonical(std::path::PathBuf),
    /// An object in a store, by its URL.
    Object(crate::objects::ObjectUrl),
}

/// What the checks found out about one audio file.
#[derive(Clone, Debug)]
pub(crate) struct Inspection {
    /// Known whenever the file exists, even if it is not acceptable.
    pub id: Option<FileId>,
    /// Its size and format, or why it cannot be uploaded (a message for the `file` column).
    /// The format is `None` when the first bytes were left to [`read_format`].
    pub outcome: Result<(u64, Option<AudioFormat>), String>,
    /// When it was last modified, as checked: the upload checks it has not changed since.
    pub modified: Option<SystemTime>,
    /// An object in a store: which one, as checked (its ETag).
    pub object: Option<crate::objects::RemoteObject>,
}

/// Checks the file at `path`: its metadata, then (with `head`) its first bytes; without it,
/// a file its metadata accept is left for [`read_format`] to read.
pub(crate) fn inspect(path: &Path, head: bool) -> Inspection {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            let message = if e.kind() == io::ErrorKind::NotFound {
                missing(path)
            } else {
                format!("cannot be read: {} ({})", io_text(&e), shown(path))
            };
            return Inspection {
                id: None,
                outcome: Err(message),
                modified: None,
                object: None,
            };
        }
    };
    Inspection {
        id: file_id(path, &meta),
        outcome: check_file(path, &meta, head),
        modified: meta.modified().ok(),
        object: None,
    }
}

/// Why `path` names no file, with what may explain it: a link to a missing target, a `~` no
/// shell expanded, backslashes, or a name on disk that differs only in its Unicode form.
fn missing(path: &Path) -> String {
    if let Ok(meta) = fs::symlink_metadata(path)
        && meta.file_type().is_symlink()
    {
        let target = fs::read_link(path).unwrap_or_default();
        return format!(
            "is a symbolic link to {}, which does not exist ({})",
            shown(&target),
            shown(path)
        );
    }
    let mut message = format!("no such file (looked in {})", shown(path));
    // A manifest written on Windows: `calls\0001.wav` names one file, not a folder.
    if cfg!(unix) && path.to_string_lossy().contains('\\') {
        message.push_str(
            "; its path has backslashes, which this system reads as part of a name: write the folders with /",
        );
    }
    if path.components().any(|part| part.as_os_str() == "~") {
        message.push_str(
            "; ~ is not expanded here (a shell does that, not the manifest): write the home folder out in full",
        );
    }
    if let Some(on_disk) = differently_normalised(path) {
        message.push_str(&format!(
            "; the folder has {}, which looks the same but is written with other Unicode code points ({} on disk, {} in the manifest): write the name as the disk has it",
            shown(Path::new(&on_disk)),
            normal_form(&on_disk),
            normal_form(&path.file_name().unwrap_or_default().to_string_lossy()),
        ));
    }
    message
}

/// A name in `path`'s folder equal to its file name once both are in NFC: macOS writes
/// names decomposed (NFD), most other systems and spreadsheets composed (NFC).
fn differently_normalised(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    if name.is_ascii() {
        return None;
    }
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    let wanted = nfc.normalize(name);
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::read_dir(folder).ok()?.find_map(|entry| {
        let entry = entry.ok()?.file_name().into_string().ok()?;
        (entry != name && nfc.normalize(&entry) == wanted).then_some(entry)
    })
}

fn normal_form(name: &str) -> &'static str {
    let nfc = icu_normalizer::ComposingNormalizerBorrowed::new_nfc();
    let nfd = icu_normalizer::DecomposingNormalizerBorrowed::new_nfd();
    if nfc.normalize(name) == name {
        "NFC"
    } else if nfd.normalize(name) == name {
        "NFD"
    } else {
        "mixed"
    }
}

fn check_file(
    path: &Path,
    meta: &Metadata,
    head: bool,
) -> Result<(u64, Option<AudioFormat>), String> {
    if meta.is_dir() {
        return Err(format!("is a folder, not a file ({})", shown(path)));
    }
    if !meta.is_file() {
        return Err(format!(
            "is {}, not a regular file ({})",
            special_kind(meta),
            shown(path)
        ));
    }
    let size = meta.len();
    check_size(size)?;
    match head {
        true => Ok((size, Some(read_format(path)?))),
        false => Ok((size, None)),
    }
}

/// The checks on the first bytes of a file whose metadata passed [`inspect`]: it can be read,
/// and is audio.
pub(crate) fn read_format(path: &Path) -> Result<AudioFormat, String> {
    let mut head = [0u8; SNIFF_LEN];
    let read = read_head(path, &mut head)
        .map_err(|e| format!("cannot be read: {} ({})", io_text(&e), shown(path)))?;
    check_head(&head[..read])
}

/// The rule on an audio file's size, wherever it is (a local file, an object).
pub(crate) fn check_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("is empty (0 bytes)".to_string());
    }
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "is {}, more than the 5 GiB a single upload takes",
            crate::human::bytes(size)
        ));
    }
    Ok(())
}

/// The rule on an audio file's first bytes ([`SNIFF_LEN`] of them, fewer for a short file),
/// wherever it is.
pub(crate) fn check_head(head: &[u8]) -> Result<AudioFormat, String> {
    sniff(head).ok_or_else(|| {
        format!(
            "is not audio: its first bytes match no known audio format; {}",
            describe_start(head)
        )
    })
}

/// What the checks found of an object in a store: the same rules as a local file's, on its
/// HEAD and its first bytes.
pub(crate) fn inspect_object(
    looked: Result<crate::objects::Looked, crate::objects::Problem>,
) -> Inspection {
    match looked {
        Ok(looked) => Inspection {
            id: Some(FileId::Object(looked.object.url.clone())),
            outcome: check_head(&looked.head).map(|format| (looked.size, Some(format))),
            modified: None,
            object: Some(looked.object),
        },
        Err(problem) => Inspection {
            id: None,
            outcome: Err(problem.message),
            modified: None,
            object: None,
        },
    }
}

/// Reads up to `head.len()` leading bytes; fewer only at the end of the file. Out of
/// descriptors (the uploads hold many), it waits for some to be closed rather than calling
/// the file unreadable.
fn read_head(path: &Path, head: &mut [u8]) -> io::Result<usize> {
    let mut wait = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    let (mut file, _) = loop {
        match open_regular(path) {
            Err(e) if out_of_descriptors(&e) && waited < MAX_DESCRIPTOR_WAIT => {
                std::thread::sleep(wait);
                waited += wait;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            opened => break opened?,
        }
    };
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// How long a check waits for a descriptor before it gives up and says so.
const MAX_DESCRIPTOR_WAIT: Duration = Duration::from_secs(60);

/// Opens `path` for reading without ever blocking, and checks on the open descriptor that it
/// is a regular file: a named pipe put in place of a checked file would otherwise wait for a
/// writer for ever (no timeout fires in `open`). Anything else is an `InvalidInput` error
/// saying what it is now (`a named pipe, not a regular file`).
pub(crate) fn open_regular(path: &Path) -> io::Result<(File, Metadata)> {
    let file = open_nonblocking(path)?;
    let meta = file.metadata()?;
    if meta.is_file() {
        return Ok((file, meta));
    }
    let kind = match meta.is_dir() {
        true => "a folder",
        false => special_kind(&meta),
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{kind}, not a regular file"),
    ))
}

#[cfg(unix)]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK changes nothing for a regular file's reads; it only keeps `open` of a FIFO
    // from waiting.
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// On Windows a named pipe lives under `\\.\pipe\`, not where a manifest points.
#[cfg(not(unix))]
fn open_nonblocking(path: &Path) -> io::Result<File> {
    File::open(path)
}

/// `it starts with text: "<!DOCTYPE html>…"` or `it starts with bytes 89 50 4e 47 …`.
pub(crate) fn describe_start(head: &[u8]) -> String {
    let head = &head[..head.len().min(16)];
    match std::str::from_utf8(head) {
        Ok(text) if text.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            format!("it starts with text: {:?}", text)
        }
        _ => {
            let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
            format!("it starts with bytes {}", hex.join(" "))
        }
    }
}

/// A path for a message: control characters escaped (a file name may hold a line break or a
/// terminal escape), and cut short (a hostile manifest may name a megabyte-long path).
pub(crate) fn shown(path: &Path) -> String {
    const MAX_CHARS: usize = 200;
    let text = path.display().to_string();
    let mut out = String::new();
    let mut width = 0;
    let mut buf = [0; 4];
    for c in text.chars() {
        let escaped = crate::human::one_line(c.encode_utf8(&mut buf));
        width += escaped.chars().count();
        if width > MAX_CHARS {
            out.push('…');
            break;
        }
        out.push_str(&escaped);
    }
    out
}

/// "permission denied", without the "(os error 13)" tail.
pub(crate) fn io_text(error: &io::Error) -> String {
    let text = error.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(unix)]
fn special_kind(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    if kind.is_fifo() {
        "a named pipe"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_meta: &Metadata) -> &'static str {
    "a special file"
}

#[cfg(unix)]
fn file_id(_path: &Path, meta: &Metadata) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    Some(FileId::Inode {
        device: meta.dev(),
        inode: meta.ino(),
    })
}

#[cfg(not(unix))]
fn file_id(path: &Path, _meta: &Metadata) -> Option<FileId> {
    fs::canonicalize(path).ok().map(FileId::Canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAV: &[u8] = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00";

    fn error_for(path: &Path) -> String {
        inspect(path, true).outcome.unwrap_err()
    }

    #[test]
    fn a_path_in_a_message_is_cut_short_and_its_control_characters_escaped() {
        let path = format!("calls/\x1b[2J{}\n.wav", "x".repeat(1000));
        let message = error_for(Path::new(&path));
        assert!(
            message.starts_with("no such file (looked in calls/\\u{1b}[2Jxxx"),
            "{message}"
        );
        assert!(message.ends_with("xxx…)"), "{message}");
        assert!(message.chars().count() < 260, "{message}");
        // Cut by the width it shows with, not by characters: each \u{7f} shows as six.
        let message = error_for(Path::new(&"\u{7f}".repeat(300)));
        assert!(message.chars().count() < 260, "{message}");
    }

    #[test]
    fn an_audio_file_reports_its_size_and_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        fs::write(&path, WAV).unwrap();
        let inspection = inspect(&path, true);
        assert_eq!(
            inspection.outcome,
            Ok((WAV.len() as u64, Some(AudioFormat::Wav)))
        );
        assert!(inspection.id.is_some());
    }

    #[test]
    fn a_file_left_unread_is_checked_by_its_metadata_and_read_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        fs::write(&path, b"not audio at all").unwrap();
        assert_eq!(inspect(&path, false).outcome, Ok((16, None)));
        assert!(read_format(&path).unwrap_err().starts_with("is not audio"));
        // What the metadata say is still said without reading.
        fs::write(&path, b"").unwrap();
        assert_eq!(
            inspect(&path, false).outcome,
            Err("is empty (0 bytes)".into())
        );
        assert!(
            inspect(dir.path(), false)
                .outcome
                .unwrap_err()
                .starts_with("is a folder")
        );
    }

    #[test]
    fn a_missing_file_names_where_it_was_looked_for() {
        let path = Path::new("no/such/dir/a.wav");
        assert_eq!(
            error_for(path),
            "no such file (looked in no/such/dir/a.wav)"
        );
        assert!(inspect(path, true).id.is_none());
    }

    #[cfg(unix)]
    #[test]
    fn a_windows_path_that_is_not_found_says_to_write_it_with_slashes() {
        assert_eq!(
            error_for(Path::new("calls\\0001.wav")),
            "no such file (looked in calls\\0001.wav); its path has backslashes, which this system reads as part of a name: write the folders with /"
        );
    }

    #[test]
    fn folders_empty_files_and_non_audio_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(error_for(dir.path()).starts_with("is a folder, not a file"));
        let empty = dir.path().join("empty.wav");
        fs::write(&empty, b"").unwrap();
        assert_eq!(error_for(&empty), "is empty (0 bytes)");
        let html = dir.path().join("page.wav");
        fs::write(&html, b"<!DOCTYPE html><html><body>404</body>").unwrap();
        let err = error_for(&html);
        assert!(err.starts_with("is not audio"), "{err}");
        assert!(
            err.ends_with(r#"it starts with text: "<!DOCTYPE html><""#),
            "{err}"
        );
        let png = dir.path().join("image.wav");
        fs::write(&png, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap();
        assert!(
            error_for(&png)
                .ends_with("it starts with bytes 89 50 4e 47 0d 0a 1a 0a 00 00 00 0d 49 48 44 52")
        );
    }

    #[test]
    fn a_file_over_5_gib_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.wav");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap(); // sparse: no disk space used
        assert_eq!(
            error_for(&path),
            "is 5.0 GiB, more than the 5 GiB a single upload takes"
        );
        file.set_len(MAX_FILE_BYTES).unwrap();
        assert!(error_for(&path).starts_with("is not audio"));
    }

    #[cfg(unix)]
    #[test]
    fn a_named_pipe_is_refused_without_opening_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe.wav");
        let status = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success());
        // Opening a FIFO with no writer would block this test forever.
        assert!(error_for(&path).starts_with("is a named pipe, not a regular file"));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_is_a_read_error_and_a_dangling_link_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        let b = dir.path().join("b.wav");
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let err = error_for(&a);
        assert!(
            err.starts_with("cannot be read: too many levels of symbolic links"),
            "{err}"
        );
        let dangling = dir.path().join("dangling.wav");
        let gone = dir.path().join("gone.wav");
        std::os::unix::fs::symlink(&gone, &dangling).unwrap();
        assert_eq!(
            error_for(&dangling),
            format!(
                "is a symbolic link to {}, which does not exist ({})",
                gone.display(),
                dangling.display()
            )
        );
    }

    #[test]
    fn a_name_in_another_unicode_form_on_disk_is_pointed_out() {
        let dir = tempfile::tempdir().unwrap();
        let nfd = "cafe\u{301}.wav"; // as macOS writes it
        let nfc = "caf\u{e9}.wav"; // as a spreadsheet does
        fs::write(dir.path().join(nfd), WAV).unwrap();
        let err = error_for(&dir.path().join(nfc));
        assert!(
            err.ends_with(&format!(
                "; the folder has {nfd}, which looks the same but is written with other Unicode code points (NFD on disk, NFC in the manifest): write the name as the disk has it"
            )),
            "{err}"
        );
        let err = error_for(&dir.path().join("caf\u{e8}.wav"));
        assert!(!err.contains("the folder has"), "another letter: {err}");
    }

    #[test]
    fn a_tilde_is_said_not_to_be_expanded() {
        let err = error_for(Path::new("manifests/~/calls/a.wav"));
        assert_eq!(
            err,
            "no such file (looked in manifests/~/calls/a.wav); ~ is not expanded here (a shell does that, not the manifest): write the home folder out in full"
        );
    }

    #[cfg(unix)]
    #[test]
    fn two_spellings_and_a_hard_link_are_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        fs::write(&path, WAV).unwrap();
        let other = dir.path().join("link.wav");
        fs::hard_link(&path, &other).unwrap();
        let id = inspect(&path, true).id;
        assert_eq!(inspect(&dir.path().join(".").join("a.wav"), true).id, id);
        assert_eq!(inspect(&other, true).id, id);
    }

    #[test]
    fn io_errors_read_as_lower_case_phrases() {
        let e = io::Error::from_raw_os_error(13);
        assert_eq!(io_text(&e), "permission denied");
    }
}
