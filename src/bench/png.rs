//! PNG files from 8-bit RGB pixels, for the benchmark charts. Written
//! here with flate2 (already in the build for parquet, with the same
//! features) rather than through an image crate whose png encoder would
//! widen flate2's features and so rebuild parquet and DataFusion.

use std::io::Write;

use flate2::Crc;
use flate2::write::ZlibEncoder;

const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];

/// `rgb` holds `width * height` pixels, rows top to bottom, three bytes
/// each. `None` when the sizes do not agree.
pub fn encode_rgb(width: u32, height: u32, rgb: &[u8]) -> Option<Vec<u8>> {
    let row = width as usize * 3;
    if width == 0 || height == 0 || rgb.len() != row * height as usize {
        return None;
    }
    let mut header = Vec::with_capacity(13);
    header.extend_from_slice(&width.to_be_bytes());
    header.extend_from_slice(&height.to_be_bytes());
    // 8 bits per channel, colour type 2 (RGB), deflate, adaptive
    // filtering, no interlace.
    header.extend_from_slice(&[8, 2, 0, 0, 0]);

    // Each row starts with its filter type. "Up" (2) turns the charts'
    // long runs of identical rows into zeros, which deflate well.
    let mut filtered = Vec::with_capacity((row + 1) * height as usize);
    for (y, line) in rgb.chunks_exact(row).enumerate() {
        if y == 0 {
            filtered.push(0);
            filtered.extend_from_slice(line);
        } else {
            let above = &rgb[(y - 1) * row..y * row];
            filtered.push(2);
            filtered.extend(line.iter().zip(above).map(|(b, a)| b.wrapping_sub(*a)));
        }
    }
    let mut zlib = ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&filtered).ok()?;
    let data = zlib.finish().ok()?;

    let mut png = SIGNATURE.to_vec();
    chunk(&mut png, b"IHDR", &header);
    chunk(&mut png, b"IDAT", &data);
    chunk(&mut png, b"IEND", &[]);
    Some(png)
}

/// Length, type, data, and the CRC-32 of type and data.
fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let mut crc = Crc::new();
    crc.update(kind);
    crc.update(data);
    out.extend_from_slice(&crc.sum().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// Splits a PNG into its chunks, checking each CRC.
    fn chunks(png: &[u8]) -> Vec<([u8; 4], Vec<u8>)> {
        assert_eq!(png[..8], SIGNATURE);
        let mut rest = &png[8..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let kind: [u8; 4] = rest[4..8].try_into().unwrap();
            let data = rest[8..8 + len].to_vec();
            let crc = u32::from_be_bytes(rest[8 + len..12 + len].try_into().unwrap());
            let mut expected = Crc::new();
            expected.update(&kind);
            expected.update(&data);
            assert_eq!(crc, expected.sum(), "CRC of {kind:?}");
            out.push((kind, data));
            rest = &rest[12 + len..];
        }
        out
    }

    #[test]
    fn pixels_round_trip_through_the_filters() {
        let (w, h) = (5u32, 4u32);
        let rgb: Vec<u8> = (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect();
        let png = encode_rgb(w, h, &rgb).unwrap();
        let chunks = chunks(&png);
        let kinds: Vec<&[u8; 4]> = chunks.iter().map(|(k, _)| k).collect();
        assert_eq!(kinds, [b"IHDR", b"IDAT", b"IEND"]);
        assert_eq!(chunks[0].1[..8], [0, 0, 0, 5, 0, 0, 0, 4]);
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&chunks[1].1[..])
            .read_to_end(&mut raw)
            .unwrap();
        // Undo the filters: row 0 unfiltered, the others "up".
        let row = w as usize * 3;
        let mut pixels: Vec<u8> = Vec::new();
        for (y, line) in raw.chunks_exact(row + 1).enumerate() {
            assert_eq!(line[0], if y == 0 { 0 } else { 2 });
            for (x, b) in line[1..].iter().enumerate() {
                let above = if y == 0 { 0 } else { pixels[(y - 1) * row + x] };
                pixels.push(b.wrapping_add(above));
            }
        }
        assert_eq!(pixels, rgb);
    }

    #[test]
    fn sizes_that_disagree_are_refused() {
        assert!(encode_rgb(2, 2, &[0; 11]).is_none());
        assert!(encode_rgb(0, 2, &[]).is_none());
    }
}
