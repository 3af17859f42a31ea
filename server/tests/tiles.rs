//! The HTTP tiles listener (c2sp.org/tlog-tiles) against the spec and an
//! independent reader: `tlog_tiles` (cloudflare/azul, a port of Go's
//! `sumdb/tlog`) authenticates every tile it reads against the signed
//! checkpoint's root, and its proofs from our tiles verify.

use std::collections::HashMap;
use std::net::SocketAddr;

use tlog_core::tiles::{TileKind, TilePath, new_tiles, parse_bundle};
use tlog_proto::v1 as pb;

use crate::common::{TestServer, event};

pub use tlog_e2e::http_request as http;

fn get(addr: SocketAddr, path: &str) -> (u16, HashMap<String, String>, Vec<u8>) {
    http(addr, "GET", path, &[])
}

use tlog_e2e::HttpTiles;

async fn fill(server: &TestServer, n: u64) -> Vec<Vec<u8>> {
    let mut c = server.client().await;
    let mut i = 0;
    while i < n {
        let k = (n - i).min(100);
        c.append_batch(pb::AppendBatchRequest {
            events: (i..i + k)
                .map(|j| event("tiles", &format!("e{j}")))
                .collect(),
        })
        .await
        .expect("append");
        i += k;
    }
    let mut leaves = Vec::new();
    let mut stream = c
        .get_entries(pb::GetEntriesRequest { start: 0, end: n })
        .await
        .expect("entries")
        .into_inner();
    while let Some(page) = stream.message().await.expect("page") {
        leaves.extend(page.entries.into_iter().map(|e| e.leaf));
    }
    assert_eq!(leaves.len() as u64, n);
    leaves
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiles_are_served_as_the_spec_says_and_an_independent_reader_verifies_them() {
    let (server, addr) = TestServer::start_with_http("/models", |_| {}).await;
    let n = 600u64;
    let leaves = fill(&server, n).await;
    let cp = server
        .client()
        .await
        .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
        .await
        .expect("checkpoint")
        .into_inner()
        .checkpoint
        .expect("checkpoint");
    let vkey = server.vkey.clone();
    let checks = tokio::task::spawn_blocking(move || {
        // The checkpoint: the signed note the log serves over gRPC, as
        // text, not to be cached for long.
        let (status, h, body) = get(addr, "/models/checkpoint");
        assert_eq!(status, 200);
        assert_eq!(h["content-type"], "text/plain; charset=utf-8");
        assert_eq!(h["cache-control"], "no-cache");
        assert_eq!(body, cp.note.as_bytes());
        // signed_note (azul) opens the note with the log's verifier key:
        // one verified Ed25519 signature, by the log's name.
        let note = signed_note::Note::from_bytes(&body).expect("signed_note parses the note");
        let verifier =
            signed_note::StandardVerifier::new(&vkey).expect("signed_note takes the vkey");
        let known = signed_note::VerifierList::new(vec![Box::new(verifier)]);
        let (verified, others) = note
            .verify(&known)
            .expect("signed_note verifies the signature");
        assert_eq!(verified.len(), 1);
        assert_eq!(verified[0].name(), crate::common::ORIGIN);
        assert!(others.is_empty());
        let text = String::from_utf8(body).expect("utf-8");
        let (signed, _) = text.split_once("\n\n").expect("note body");
        let parsed = tlog_tiles::Checkpoint::from_bytes(format!("{signed}\n").as_bytes())
            .expect("the oracle parses the checkpoint");
        assert_eq!((parsed.origin(), parsed.size()), (crate::common::ORIGIN, n));
        assert_eq!(parsed.hash().0[..], cp.root_hash[..]);

        // Every tile and bundle of the tree, byte for byte as the oracle
        // computes it from the leaves.
        let mut oracle = Vec::new();
        struct Stored<'a>(&'a Vec<tlog_tiles::Hash>);
        impl tlog_tiles::HashReader for Stored<'_> {
            fn read_hashes(&self, idx: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
                Ok(idx.iter().map(|&i| self.0[i as usize]).collect())
            }
        }
        for (i, leaf) in leaves.iter().enumerate() {
            let hs = tlog_tiles::stored_hashes(i as u64, leaf, &Stored(&oracle)).expect("hashes");
            oracle.extend(hs);
        }
        for t in new_tiles(0, n) {
            let (status, h, body) = get(addr, &format!("/models/{}", t.to_path()));
            assert_eq!(status, 200, "{}", t.to_path());
            assert_eq!(h["content-type"], "application/octet-stream");
            assert_eq!(h["cache-control"], "public, max-age=31536000, immutable");
            assert_eq!(h["content-length"], body.len().to_string());
            match t.kind {
                TileKind::Hashes { level } => {
                    let want = tlog_tiles::Tile::new(8, level, t.index, u32::from(t.width), false)
                        .read_data(&Stored(&oracle))
                        .expect("oracle tile");
                    assert_eq!(body, want, "{}", t.to_path());
                }
                TileKind::Entries => {
                    let got = parse_bundle(&body).expect("bundle");
                    let first = (t.index * 256) as usize;
                    let want: Vec<&[u8]> = leaves[first..first + usize::from(t.width)]
                        .iter()
                        .map(Vec::as_slice)
                        .collect();
                    assert_eq!(got, want, "{}: the exact committed leaves", t.to_path());
                }
            }
        }

        // An independent reader that knows only the tiles: it checks each
        // tile against the checkpoint's root and proves entries from them.
        let reader = HttpTiles {
            addr,
            prefix: "/models".into(),
        };
        let root = tlog_tiles::Hash(cp.root_hash.clone().try_into().expect("32 bytes"));
        let thr = tlog_tiles::TileHashReader::new(n, root, &reader);
        assert_eq!(
            tlog_tiles::tree_hash(n, &thr).expect("root from tiles"),
            root
        );
        for i in [0u64, 1, 255, 256, 511, 599] {
            let proof = tlog_tiles::prove_record(n, i, &thr).expect("proof from tiles");
            tlog_tiles::check_record(
                &proof,
                n,
                root,
                i,
                tlog_tiles::record_hash(&leaves[i as usize]),
            )
            .expect("the proof verifies");
        }
        let old = 300u64;
        let old_root = tlog_tiles::tree_hash(old, &thr).expect("old root");
        let p = tlog_tiles::prove_tree(n, old, &thr).expect("consistency from tiles");
        tlog_tiles::check_tree(&p, n, root, old, old_root).expect("consistent");
    });
    checks.await.expect("checks");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tiles_that_exist_are_served_and_bad_requests_say_why() {
    let (server, addr) = TestServer::start_with_http("", |_| {}).await;
    fill(&server, 600).await;
    tokio::task::spawn_blocking(move || {
        let status = |p: &str| get(addr, p).0;
        // 600 = 2 * 256 + 88: level 0 has two full tiles and one of 88.
        assert_eq!(status("/tile/0/001"), 200);
        assert_eq!(status("/tile/0/002.p/88"), 200);
        assert_eq!(
            status("/tile/0/002.p/87"),
            200,
            "a width an earlier size had"
        );
        assert_eq!(status("/tile/0/002.p/89"), 404, "beyond the tree");
        assert_eq!(status("/tile/0/002"), 404, "not full yet");
        assert_eq!(status("/tile/entries/002.p/88"), 200);
        assert_eq!(status("/tile/entries/002.p/89"), 404);
        assert_eq!(status("/tile/1/000.p/2"), 200);
        assert_eq!(status("/tile/1/000.p/3"), 404);
        assert_eq!(status("/tile/1/000"), 404);
        assert_eq!(status("/tile/2/000.p/1"), 404);
        // Not tile paths at all, or not canonical: 404 with the reason.
        for p in [
            "/tile/0/1",
            "/tile/0/x000/001",
            "/tile/00/000",
            "/tile/0/000.p/0",
            "/nope",
            "/tile/64/000",
        ] {
            let (s, h, body) = get(addr, p);
            assert_eq!(s, 404, "{p}");
            assert_eq!(h["content-type"], "text/plain; charset=utf-8");
            assert!(!body.is_empty(), "{p}: says why");
        }
        let (s, h, _) = http(addr, "POST", "/checkpoint", &[]);
        assert_eq!(s, 405);
        assert_eq!(h["allow"], "GET, HEAD");
        let (s, h, body) = http(addr, "HEAD", "/tile/0/000", &[]);
        assert_eq!(s, 200);
        assert_eq!(h["content-length"], "8192");
        assert!(body.is_empty());
        // A tiles reader's 404 is an answer, not a failure of the server.
        let tile = TilePath::parse("tile/0/002.p/88").expect("path");
        assert!(tile.exists_in(600));
    })
    .await
    .expect("checks");
    server.stop().await;
}

/// An event whose leaf would not fit an entry bundle (65535 bytes) is
/// refused with INVALID_ARGUMENT and appends nothing, even where the
/// configured event limit is higher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaf_too_long_for_an_entry_bundle_is_refused() {
    let (server, _) = TestServer::start_with_http("", |c| c.limits.max_event_bytes = 120_000).await;
    let mut c = server.client().await;
    let mut e = event("tiles", "huge");
    let digest = |alg: &str, n: usize| pb::Digest {
        algorithm: alg.into(),
        hex: "ab".repeat(n),
    };
    e.artifact.as_mut().expect("artifact").uri = format!("s3://m/{}", "u".repeat(4000));
    e.provenance = Some(pb::Provenance {
        source_repo: format!("https://git.example/{}", "r".repeat(4000)),
        builder: format!("https://ci.example/{}", "b".repeat(4000)),
        parents: (0..64)
            .map(|i| pb::ArtifactRef {
                name: format!("team-a/{i:03}{}", "p".repeat(240)),
                version: "1".repeat(120),
                digest: Some(digest("sha512", 64)),
            })
            .collect(),
        ..Default::default()
    });
    e.attestations = (0..16)
        .map(|i| pb::Attestation {
            scheme: "dsse".into(),
            key_id: format!("unknown-{i}-{}", "k".repeat(200)),
            signature: vec![7; 1024],
        })
        .collect();
    let err = c
        .append(pb::AppendRequest { event: Some(e) })
        .await
        .expect_err("too long for a bundle");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("65535"), "{err:?}");
    let cp = c
        .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
        .await
        .expect("checkpoint")
        .into_inner()
        .checkpoint
        .expect("cp");
    assert_eq!(cp.size, 0, "nothing appended");
    server.stop().await;
}

/// A tiles reader that keeps its connection open does not hold the server
/// up: stop closes it, and the store is closed when stop returns (the
/// same data directory opens again at once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keep_alive_reader_does_not_hold_the_server_up() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let (server, addr) = TestServer::start_with_http("", |_| {}).await;
    fill(&server, 3).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(b"GET /checkpoint HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let (dir, vkey) = tokio::time::timeout(std::time::Duration::from_secs(10), server.stop())
        .await
        .expect("stopped with a keep-alive connection open");
    let again = TestServer::start_in(dir, vkey, |_| {}).await;
    let mut c = again.client().await;
    let cp = c
        .get_checkpoint(pb::GetCheckpointRequest { size: 0 })
        .await
        .expect("reopened")
        .into_inner();
    assert_eq!(cp.checkpoint.expect("cp").size, 3);
    drop(s);
    again.stop().await;
}
