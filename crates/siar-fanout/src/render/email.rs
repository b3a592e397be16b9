//! A release as an email to one list recipient: multipart/alternative (text and HTML, the
//! photo by link, no attachments), the bulk-sender headers Gmail and Yahoo require
//! (`List-Unsubscribe` with one-click `List-Unsubscribe-Post`, `List-Id`), and a Message-ID
//! stable per (release version, recipient) so a resend is recognisably the same message.
//! Everything the reader sees is in Bahasa Indonesia.

use std::fmt::Write as _;
use std::time::SystemTime;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::Message;
use sha2::{Digest, Sha256};
use siar_model::Release;

use super::{format_date, plain_text, release_html, FeedContext};

/// Why a recipient gets this mail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailKind {
    /// The release, first time.
    New,
    /// A corrected version, to who got an earlier one.
    Correction,
    /// The release was withdrawn, to who got it.
    Retraction,
}

/// The list a mail goes out for.
#[derive(Clone, Debug)]
pub struct MailList {
    /// The list's id (`jurnalis`); with `domain`, the `List-Id`.
    pub id: String,
    pub name: String,
    pub from: Mailbox,
    pub reply_to: Option<Mailbox>,
    /// Domain for `List-Id` and Message-IDs.
    pub domain: String,
}

/// One recipient's links.
#[derive(Clone, Debug)]
pub struct Recipient<'a> {
    pub address: &'a str,
    /// HTTPS, with this recipient's signed token: one-click unsubscribe (RFC 8058).
    pub unsubscribe_url: &'a str,
    /// Optional `mailto:` alternative.
    pub unsubscribe_mailto: Option<&'a str>,
}

/// A header line's text: one line, no control characters (so nothing can add a header).
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The subject: the title, marked for a correction or a withdrawal.
pub fn subject(r: &Release, kind: MailKind) -> String {
    let title = one_line(&r.content.title);
    match kind {
        MailKind::New => title,
        MailKind::Correction => format!("KOREKSI: {title}"),
        MailKind::Retraction => format!("DITARIK: {title}"),
    }
}

/// `<release.vN.kind.recipient-hash@domain>`: the same for every attempt to send this
/// version to this recipient.
pub fn message_id(r: &Release, kind: MailKind, address: &str, domain: &str) -> String {
    let who = Sha256::digest(address.trim().to_lowercase().as_bytes());
    let kind = match kind {
        MailKind::New => "new",
        MailKind::Correction => "correction",
        MailKind::Retraction => "retraction",
    };
    format!(
        "<{}.v{}.{kind}.{}@{domain}>",
        r.id,
        r.version,
        hex_prefix(&who, 12)
    )
}

fn hex_prefix(bytes: &[u8], n: usize) -> String {
    bytes.iter().take(n).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn header(name: &'static str, value: String) -> HeaderValue {
    HeaderValue::new(HeaderName::new_from_ascii_str(name), value)
}

fn notice(r: &Release, kind: MailKind) -> Option<String> {
    match kind {
        MailKind::New => None,
        MailKind::Correction => Some(format!(
            "Koreksi atas siaran pers yang kami kirim sebelumnya: {}",
            r.correction_notes
                .last()
                .map(String::as_str)
                .unwrap_or("isi diperbarui")
        )),
        MailKind::Retraction => Some(match &r.retraction {
            Some(ret) => format!(
                "Siaran pers ini telah ditarik. Mohon tidak digunakan. Alasan: {}",
                ret.reason
            ),
            None => "Siaran pers ini telah ditarik. Mohon tidak digunakan.".into(),
        }),
    }
}

/// The message for one recipient, sent at `date`.
pub fn release_email(
    ctx: &FeedContext,
    list: &MailList,
    r: &Release,
    kind: MailKind,
    to: &Recipient<'_>,
    date: SystemTime,
) -> Result<Message, String> {
    ListMail::release(ctx, list, r, kind).message(to, date)
}

/// A list mail (one release, or a digest) for a whole list: the body rendered once, then one
/// message per recipient with that recipient's address, links and Message-ID.
#[derive(Clone, Debug)]
pub struct ListMail {
    list: MailList,
    publisher_name: String,
    subject: String,
    /// The Message-ID before the recipient's part: `<release.vN.kind.` or `<digest.KEY.`.
    id_stem: String,
    text: String,
    html: String,
}

/// One entry of a digest.
#[derive(Clone, Debug)]
pub struct DigestEntry<'a> {
    pub release: &'a Release,
    pub kind: MailKind,
}

impl ListMail {
    /// One release.
    pub fn release(ctx: &FeedContext, list: &MailList, r: &Release, kind: MailKind) -> Self {
        let link = ctx.permalink(r);
        let when = format_date(r.published_at.unwrap_or(r.publish_at), ctx.timezone);
        let notice = notice(r, kind);

        let mut text = String::new();
        if let Some(n) = &notice {
            let _ = writeln!(text, "{n}\n");
        }
        let _ = writeln!(text, "{}\n{when}\n", one_line(&r.content.title));
        if kind != MailKind::Retraction {
            let _ = writeln!(text, "{}\n", plain_text(r));
            for a in r
                .content
                .attachments
                .iter()
                .filter(|a| a.media_type.starts_with("image/"))
            {
                let _ = writeln!(
                    text,
                    "Foto: {}{}",
                    ctx.absolute(&a.url),
                    a.caption
                        .as_deref()
                        .map(|c| format!(" ({c})"))
                        .unwrap_or_default()
                );
            }
        }
        let _ = write!(text, "\nBaca di situs: {link}\n");

        let mut html = String::new();
        if let Some(n) = &notice {
            let _ = write!(html, "<p><strong>{}</strong></p>", esc(n));
        }
        let _ = write!(
            html,
            "<h1>{}</h1><p>{}</p>",
            esc(&one_line(&r.content.title)),
            esc(&when)
        );
        if kind != MailKind::Retraction {
            html.push_str(&release_html(ctx, r));
        }
        let _ = write!(html, "<p><a href=\"{}\">Baca di situs</a></p>", esc(&link));
        let full = message_id(r, kind, "", "");
        let id_stem = full[..full.rfind('.').map_or(full.len(), |i| i + 1)].to_owned();
        Self {
            list: list.clone(),
            publisher_name: ctx.publisher_name.clone(),
            subject: subject(r, kind),
            id_stem,
            text,
            html,
        }
    }

    /// A digest: every release since the last one. `None` when there is nothing to send.
    /// `key` names this digest (stable across attempts) in its Message-IDs.
    pub fn digest(
        ctx: &FeedContext,
        list: &MailList,
        entries: &[DigestEntry<'_>],
        key: &str,
        date: chrono::DateTime<chrono::Utc>,
    ) -> Option<Self> {
        if entries.is_empty() {
            return None;
        }
        let day = format_date(date, ctx.timezone);
        let digest_subject = format!(
            "{}: {} siaran pers, {}",
            one_line(&list.name),
            entries.len(),
            day.split(',').next().unwrap_or(&day).trim()
        );
        let mut text = format!(
            "{} — ringkasan siaran pers {}\n\n",
            one_line(&list.name),
            ctx.publisher_short
        );
        let mut html = format!(
            "<h1>{}</h1><p>Ringkasan siaran pers {}.</p>",
            esc(&one_line(&list.name)),
            esc(&ctx.publisher_short)
        );
        for e in entries {
            let r = e.release;
            let link = ctx.permalink(r);
            let when = format_date(r.published_at.unwrap_or(r.publish_at), ctx.timezone);
            let title = subject(r, e.kind);
            let _ = writeln!(text, "* {title}\n  {when}");
            let _ = write!(
                html,
                "<h2><a href=\"{}\">{}</a></h2><p>{}</p>",
                esc(&link),
                esc(&title),
                esc(&when)
            );
            if let Some(n) = notice(r, e.kind) {
                let _ = writeln!(text, "  {n}");
                let _ = write!(html, "<p><strong>{}</strong></p>", esc(&n));
            }
            if e.kind != MailKind::Retraction {
                let summary = one_line(&super::summary(r));
                if !summary.is_empty() {
                    let _ = writeln!(text, "  {summary}");
                    let _ = write!(html, "<p>{}</p>", esc(&summary));
                }
            }
            let _ = writeln!(text, "  {link}\n");
        }
        Some(Self {
            list: list.clone(),
            publisher_name: ctx.publisher_name.clone(),
            subject: digest_subject,
            id_stem: format!("<digest.{key}."),
            text,
            html,
        })
    }

    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The message for one recipient, sent at `date`: the shared body plus this recipient's
    /// footer and headers.
    pub fn message(&self, to: &Recipient<'_>, date: SystemTime) -> Result<Message, String> {
        let list = &self.list;
        let to_box: Mailbox = to
            .address
            .parse()
            .map_err(|e| format!("`{}` is not an email address: {e}", to.address))?;
        let text = format!(
            "{}\n--\nAnda menerima surel ini karena berlangganan daftar \"{}\" dari {}.\nBerhenti berlangganan: {}\n",
            self.text, list.name, self.publisher_name, to.unsubscribe_url
        );
        let html = format!(
            "<!DOCTYPE html><html lang=\"id\"><head><meta charset=\"utf-8\"></head><body>{}<hr><p style=\"font-size:small\">Anda menerima surel ini karena berlangganan daftar &ldquo;{}&rdquo; dari {}. <a href=\"{}\">Berhenti berlangganan</a></p></body></html>",
            self.html,
            esc(&list.name),
            esc(&self.publisher_name),
            esc(to.unsubscribe_url)
        );
        let mut unsubscribe = format!("<{}>", to.unsubscribe_url);
        if let Some(m) = to.unsubscribe_mailto {
            let _ = write!(unsubscribe, ", <{m}>");
        }
        let mut b = Message::builder()
            .from(list.from.clone())
            .to(to_box)
            .subject(&self.subject)
            .date(date)
            .message_id(Some(format!(
                "{}{}@{}>",
                self.id_stem,
                recipient_hash(to.address),
                list.domain
            )))
            .raw_header(header(
                "List-Id",
                format!(
                    "\"{}\" <{}.{}>",
                    one_line(&list.name).replace('"', "'"),
                    list.id,
                    list.domain
                ),
            ))
            .raw_header(header("List-Unsubscribe", unsubscribe))
            .raw_header(header(
                "List-Unsubscribe-Post",
                "List-Unsubscribe=One-Click".into(),
            ))
            .raw_header(header("Auto-Submitted", "auto-generated".into()))
            .raw_header(header("Precedence", "bulk".into()));
        if let Some(r) = &list.reply_to {
            b = b.reply_to(r.clone());
        }
        alternative(b, text, html)
    }
}

fn esc(s: &str) -> String {
    html_escape::encode_text(s).into_owned()
}

fn recipient_hash(address: &str) -> String {
    hex_prefix(
        &Sha256::digest(address.trim().to_lowercase().as_bytes()),
        12,
    )
}

/// The message with a text and an HTML version of the same content.
fn alternative(
    b: lettre::message::MessageBuilder,
    text: String,
    html: String,
) -> Result<Message, String> {
    b.multipart(
        MultiPart::alternative()
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_PLAIN)
                    .body(text),
            )
            .singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html),
            ),
    )
    .map_err(|e| format!("building the message: {e}"))
}

/// The mail that asks a would-be subscriber to confirm (double opt-in). Not a list mail: it
/// goes to one address, once, because someone asked.
pub fn confirmation_email(
    ctx: &FeedContext,
    list: &MailList,
    to: &str,
    confirm_url: &str,
    valid_hours: u32,
    date: SystemTime,
) -> Result<Message, String> {
    let to_box: Mailbox = to
        .parse()
        .map_err(|e| format!("`{to}` is not an email address: {e}"))?;
    let name = one_line(&list.name);
    let text = format!(
        "Halo,\n\nSeseorang (semoga Anda) meminta alamat ini didaftarkan ke daftar surel \"{name}\" dari {}.\n\nUntuk memastikan, buka tautan berikut dan tekan tombol \"Konfirmasi\":\n{confirm_url}\n\nTautan berlaku {valid_hours} jam. Jika Anda tidak memintanya, abaikan surel ini: alamat Anda tidak akan didaftarkan.\n",
        ctx.publisher_name
    );
    let html = format!(
        "<!DOCTYPE html><html lang=\"id\"><head><meta charset=\"utf-8\"></head><body><p>Halo,</p><p>Seseorang (semoga Anda) meminta alamat ini didaftarkan ke daftar surel &ldquo;{}&rdquo; dari {}.</p><p><a href=\"{}\">Konfirmasi langganan</a></p><p>Tautan berlaku {valid_hours} jam. Jika Anda tidak memintanya, abaikan surel ini: alamat Anda tidak akan didaftarkan.</p></body></html>",
        esc(&name),
        esc(&ctx.publisher_name),
        esc(confirm_url)
    );
    let mut b = Message::builder()
        .from(list.from.clone())
        .to(to_box)
        .subject(format!("Konfirmasi langganan: {name}"))
        .date(date)
        .message_id(Some(format!(
            "<confirm.{}.{}@{}>",
            date.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            recipient_hash(to),
            list.domain
        )))
        .raw_header(header("Auto-Submitted", "auto-generated".into()));
    if let Some(r) = &list.reply_to {
        b = b.reply_to(r.clone());
    }
    alternative(b, text, html)
}

/// The headers a DKIM signature covers: what a receiver must be able to trust, the
/// unsubscribe headers included (Gmail and Yahoo require them signed for one-click).
pub const DKIM_SIGNED_HEADERS: [&str; 8] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

/// A DKIM signer for `domain` with the key published at `selector._domainkey.domain`:
/// `key` is an RSA private key in PKCS#1 PEM, or an Ed25519 key in base64.
pub fn dkim_config(
    selector: &str,
    domain: &str,
    key: &str,
) -> Result<lettre::message::dkim::DkimConfig, String> {
    use lettre::message::dkim::{
        DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
        DkimSigningKey,
    };
    let algorithm = if key.contains("BEGIN RSA PRIVATE KEY") {
        DkimSigningAlgorithm::Rsa
    } else if key.contains("BEGIN") {
        return Err(
            "the DKIM key must be RSA in PKCS#1 PEM (BEGIN RSA PRIVATE KEY) or Ed25519 in base64"
                .into(),
        );
    } else {
        DkimSigningAlgorithm::Ed25519
    };
    let signing = DkimSigningKey::new(key.trim(), algorithm)
        .map_err(|e| format!("the DKIM key cannot be read: {e}"))?;
    Ok(DkimConfig::new(
        selector.to_owned(),
        domain.to_owned(),
        signing,
        DKIM_SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect(),
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))
}
