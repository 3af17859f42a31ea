//! `tlog report`: an investigator's timeline of an artifact. Who did what,
//! when, through which interface, with which provenance; each line marked
//! verified with the checkpoint it was proven against.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;
use tlog_client::VerifiedEntry;
use tlog_core::Hash;
use tlog_core::bundle::VerifiedBundle;
use tlog_core::checkpoint::SignedCheckpoint;
use tlog_core::json::{format_time, leaf_json};
use tlog_core::leaf::{AnyLeaf, decode_any};

use crate::{Failure, Res};

/// Output format.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// Markdown.
    Markdown,
    /// One self-contained HTML page.
    Html,
    /// JSON.
    Json,
}

impl Format {
    /// Parses `md`, `html` or `json`.
    pub fn parse(s: &str) -> Res<Format> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "json" => Ok(Format::Json),
            other => Err(Failure::usage(anyhow::anyhow!(
                "--format {other:?}: use md, html or json"
            ))),
        }
    }
}

/// One timeline line.
struct Row {
    index: u64,
    leaf_hash: Hash,
    leaf: Option<AnyLeaf>,
}

struct Cells {
    when: String,
    what: String,
    version: String,
    environment: String,
    who: String,
    submitted_by: String,
    interface: String,
    provenance: String,
    why: String,
    signed_by: String,
}

fn cells(leaf: &Option<AnyLeaf>) -> Cells {
    match leaf {
        Some(AnyLeaf::Event(l)) => {
            let e = &l.event;
            let provenance = e
                .provenance
                .as_ref()
                .map(|p| {
                    let mut parts = Vec::new();
                    if !p.source_repo.is_empty() {
                        parts.push(format!("{}@{}", p.source_repo, p.source_commit));
                    }
                    if !p.builder.is_empty() {
                        parts.push(format!("built by {}", p.builder));
                    }
                    for d in &p.data_digests {
                        parts.push(format!("data {}:{}", d.algorithm, short(&d.hex)));
                    }
                    for r in &p.parents {
                        parts.push(format!("from {}@{}", r.name, r.version));
                    }
                    parts.join("; ")
                })
                .unwrap_or_default();
            let mut why = e.justification.clone();
            if !e.ticket.is_empty() {
                if !why.is_empty() {
                    why.push_str("; ");
                }
                why.push_str(&format!("ticket {}", e.ticket));
            }
            Cells {
                when: format_time(l.integrated_at),
                what: e.action.as_str().to_owned(),
                version: format!(
                    "{} ({})",
                    e.artifact.version,
                    e.artifact
                        .digests
                        .iter()
                        .map(|d| format!("{}:{}", d.algorithm, short(&d.hex)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                environment: e.environment.clone(),
                who: e.actor.clone(),
                submitted_by: format!("{} ({})", l.submitter.principal, l.submitter.auth_method),
                interface: e.interface.as_str().to_owned(),
                provenance,
                why,
                signed_by: l.verified_signers.join(", "),
            }
        }
        Some(AnyLeaf::Access(a)) => Cells {
            when: a.time.clone(),
            what: format!("access {}", a.method),
            version: String::new(),
            environment: String::new(),
            who: a.principal.clone(),
            submitted_by: a.auth_method.clone(),
            interface: "api".into(),
            provenance: String::new(),
            why: a.justification.clone(),
            signed_by: String::new(),
        },
        None => Cells {
            when: String::new(),
            what: "(leaf does not decode)".into(),
            version: String::new(),
            environment: String::new(),
            who: String::new(),
            submitted_by: String::new(),
            interface: String::new(),
            provenance: String::new(),
            why: String::new(),
            signed_by: String::new(),
        },
    }
}

fn short(hex: &str) -> String {
    hex.chars().take(12).collect()
}

/// The report for entries verified against the log just now.
pub fn render(
    query: &str,
    cp: &SignedCheckpoint,
    vkey: &str,
    entries: &[VerifiedEntry],
    f: Format,
) -> String {
    let rows = entries
        .iter()
        .map(|e| Row {
            index: e.index,
            leaf_hash: e.leaf_hash,
            leaf: decode_any(&e.leaf).ok(),
        })
        .collect::<Vec<_>>();
    render_rows(
        query,
        cp,
        vkey,
        "fetched from the log and verified",
        &rows,
        f,
    )
}

/// The report for a verified evidence bundle.
pub fn render_bundle(v: &VerifiedBundle, query: &str, f: Format) -> String {
    let mut rows = v
        .entries
        .iter()
        .map(|(index, leaf_hash, leaf)| Row {
            index: *index,
            leaf_hash: *leaf_hash,
            leaf: Some(leaf.clone()),
        })
        .collect::<Vec<_>>();
    rows.sort_by_key(|r| r.index);
    let source = if v.pinned {
        "read from an evidence bundle, verified offline with the pinned key"
    } else {
        "read from an evidence bundle, verified offline with the bundle's own key (not pinned)"
    };
    render_rows(query, &v.checkpoint, &v.verifier_key, source, &rows, f)
}

fn render_rows(
    query: &str,
    cp: &SignedCheckpoint,
    vkey: &str,
    source: &str,
    rows: &[Row],
    f: Format,
) -> String {
    let generated = format_time(tlog_core::event::Timestamp::now());
    let c = &cp.checkpoint;
    match f {
        Format::Json => {
            let v = json!({
                "query": query,
                "generated_at": generated,
                "source": source,
                "log": c.origin,
                "verifier_key": vkey,
                "checkpoint": {"size": c.size, "root_hash": c.root.to_hex(), "signed_note": cp.raw},
                "entries": rows.iter().map(|r| json!({
                    "index": r.index,
                    "leaf_hash": r.leaf_hash.to_hex(),
                    "verified": true,
                    "proven_against_size": c.size,
                    "entry": r.leaf.as_ref().map(leaf_json),
                })).collect::<Vec<_>>(),
            });
            serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
        }
        Format::Markdown => {
            let mut s = String::new();
            let _ = writeln!(s, "# Artifact timeline: `{query}`\n");
            let _ = writeln!(s, "- Log: `{}`", c.origin);
            let _ = writeln!(s, "- Verifier key: `{vkey}`");
            let _ = writeln!(
                s,
                "- Checkpoint: size {}, root `{}` (signature verified)",
                c.size, c.root
            );
            let _ = writeln!(s, "- Entries: {} ({source})", rows.len());
            let _ = writeln!(s, "- Generated: {generated}\n");
            let _ = writeln!(
                s,
                "| # | When (integrated) | Action | Version (digest) | Environment | Actor (claimed) | Submitted by (authenticated) | Interface | Provenance | Why | Signed by | Leaf hash | Verified |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
            for r in rows {
                let x = cells(&r.leaf);
                let cell = |t: &str| t.replace('|', "\\|").replace('\n', " ");
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | `{}` | ✓ in size {} |",
                    r.index,
                    cell(&x.when),
                    cell(&x.what),
                    cell(&x.version),
                    cell(&x.environment),
                    cell(&x.who),
                    cell(&x.submitted_by),
                    cell(&x.interface),
                    cell(&x.provenance),
                    cell(&x.why),
                    cell(&x.signed_by),
                    short(&r.leaf_hash.to_hex()),
                    c.size
                );
            }
            let _ = writeln!(
                s,
                "\nEach line's leaf was hashed and its RFC 9162 inclusion proof checked against the signed checkpoint above. \
                 To hand this over as evidence: `tlog export {query} -o bundle.json`, checked offline with `tlog verify-bundle bundle.json --vkey '{vkey}'`."
            );
            let _ = writeln!(s, "\nSigned checkpoint:\n\n```\n{}```", cp.raw);
            s
        }
        Format::Html => {
            let mut s = String::new();
            let _ = write!(
                s,
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <title>Timeline: {q}</title><style>\
                 body{{font-family:system-ui,sans-serif;margin:2rem;color:#1a1a1a;background:#fafafa}}\
                 h1{{font-size:1.4rem}} dl{{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}}\
                 dt{{font-weight:600}} code{{font-size:.85em;word-break:break-all}}\
                 table{{border-collapse:collapse;width:100%;font-size:.9rem;background:#fff}}\
                 th,td{{border:1px solid #ddd;padding:.35rem .5rem;text-align:left;vertical-align:top}}\
                 th{{background:#f0f0f0;position:sticky;top:0}} tr:nth-child(even){{background:#f9f9f9}}\
                 .ok{{color:#0a6b2f;font-weight:600;white-space:nowrap}}\
                 .act-deploy,.act-promote,.act-rollback{{font-weight:600}} .act-retire{{color:#8a4b00}}\
                 pre{{background:#fff;border:1px solid #ddd;padding:.6rem;overflow-x:auto}}\
                 footer{{margin-top:1.5rem;font-size:.85rem;color:#555}}\
                 </style></head><body>\n<h1>Artifact timeline: <code>{q}</code></h1>\n<dl>\
                 <dt>Log</dt><dd><code>{origin}</code></dd>\
                 <dt>Verifier key</dt><dd><code>{vkey}</code></dd>\
                 <dt>Checkpoint</dt><dd>size {size}, root <code>{root}</code> (signature verified)</dd>\
                 <dt>Entries</dt><dd>{n} ({source})</dd>\
                 <dt>Generated</dt><dd>{generated}</dd></dl>\n<table><thead><tr>\
                 <th>#</th><th>When (integrated)</th><th>Action</th><th>Version (digest)</th><th>Environment</th>\
                 <th>Actor (claimed)</th><th>Submitted by (authenticated)</th><th>Interface</th><th>Provenance</th>\
                 <th>Why</th><th>Signed by</th><th>Leaf hash</th><th>Verified</th></tr></thead><tbody>\n",
                q = esc(query),
                origin = esc(&c.origin),
                vkey = esc(vkey),
                size = c.size,
                root = c.root,
                n = rows.len(),
                source = esc(source),
            );
            for r in rows {
                let x = cells(&r.leaf);
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td>{}</td><td class=\"act-{}\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code title=\"{}\">{}</code></td>\
                     <td class=\"ok\">✓ in size {}</td></tr>",
                    r.index,
                    esc(&x.when),
                    esc(&x.what),
                    esc(&x.what),
                    esc(&x.version),
                    esc(&x.environment),
                    esc(&x.who),
                    esc(&x.submitted_by),
                    esc(&x.interface),
                    esc(&x.provenance),
                    esc(&x.why),
                    esc(&x.signed_by),
                    r.leaf_hash,
                    short(&r.leaf_hash.to_hex()),
                    c.size
                );
            }
            let _ = write!(
                s,
                "</tbody></table>\n<footer><p>Each line's leaf was hashed and its RFC 9162 inclusion proof \
                 checked against the signed checkpoint below. \"Actor\" is what the submitting system claimed; \
                 \"Submitted by\" is the identity the log authenticated. To hand this over as evidence: \
                 <code>tlog export {q} -o bundle.json</code>, checked offline with \
                 <code>tlog verify-bundle bundle.json --vkey '{vkey}'</code>.</p>\
                 <p>Signed checkpoint:</p><pre>{note}</pre></footer>\n</body></html>\n",
                q = esc(query),
                vkey = esc(vkey),
                note = esc(&cp.raw),
            );
            s
        }
    }
}

/// Escapes text for HTML.
fn esc(t: &str) -> String {
    let mut s = String::with_capacity(t.len());
    for ch in t.chars() {
        match ch {
            '&' => s.push_str("&amp;"),
            '<' => s.push_str("&lt;"),
            '>' => s.push_str("&gt;"),
            '"' => s.push_str("&quot;"),
            '\'' => s.push_str("&#39;"),
            c => s.push(c),
        }
    }
    s
}

/// Writes the report to a file, or stdout.
pub fn write(out: Option<&Path>, text: &str) -> Res {
    match out {
        Some(p) => {
            std::fs::write(p, text).map_err(|e| {
                Failure::usage(anyhow::anyhow!("cannot write {}: {e}", p.display()))
            })?;
            eprintln!("report written to {}", p.display());
            Ok(())
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_everything_from_the_log() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn formats_parse() {
        assert_eq!(Format::parse("md").ok(), Some(Format::Markdown));
        assert_eq!(Format::parse("html").ok(), Some(Format::Html));
        assert!(Format::parse("pdf").is_err());
    }
}
