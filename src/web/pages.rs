//! The HTML pages and their forms (POST, then a redirect back: POST-redirect-GET).

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use chrono::{Duration, Utc};
use chrono_tz::Tz;
use serde::Deserialize;

use super::charts::{self, Series};
use super::data::{self, WatchSummary};
use super::html::{self, esc, fmt_hours, fmt_pct, fmt_rating, fmt_time, form_fields, page, Nav};
use super::params::{
    local_target, path_escape, query, query_escape, resolve_watch, watch_settings, MentionParams,
    Zones,
};
use super::{same_secret, Failure, WebState, MAX_PAGE_SIZE, SESSION_COOKIE};
use crate::domain::Label;
use crate::store::{AlertState, MentionFilter, TriageStatus, TriageUpdate, TriagedMention};

/// A page handler's error, rendered as a page.
pub struct PageError(Failure);

impl From<Failure> for PageError {
    fn from(f: Failure) -> Self {
        PageError(f)
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> Self {
        PageError(Failure::Internal(e))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, _, message) = self.0.parts();
        html::error_page(status, &message)
    }
}

type PageResult = Result<Response, PageError>;

fn ok(title: &str, nav: Nav, body: &str) -> PageResult {
    Ok(Html(page(title, nav, body)).into_response())
}

pub async fn not_found() -> Response {
    html::error_page(StatusCode::NOT_FOUND, "There is no such page.")
}

fn health_badge(h: crate::trends::Health) -> String {
    format!(
        r#"<span class="badge {0}">{1}</span>"#,
        h.as_str(),
        h.as_str().to_uppercase()
    )
}

fn run_badge(status: &str) -> String {
    let class = match status {
        "ok" | "partial" | "failed" | "running" => status,
        _ => "status",
    };
    format!(r#"<span class="badge {class}">{}</span>"#, esc(status))
}

fn watch_link(name: &str) -> String {
    format!(
        r#"<a href="/watch/{}">{}</a>"#,
        path_escape(name),
        esc(name)
    )
}

fn week_figures(w: &WatchSummary) -> String {
    let this = &w.this_week.stats;
    let last = w.last_week.as_ref().map(|p| &p.stats);
    let mut out = String::new();
    for v in &w.buyer_views {
        let class = if !v.judged {
            ""
        } else if v.below_threshold {
            "below"
        } else {
            "above"
        };
        out.push_str(&format!(
            r#"<div class="figure buyer-view"><b class="{class}">{}★</b><span>buyer's view on {} ({} reviews) vs {}{}</span></div>"#,
            fmt_rating(v.average_rating),
            esc(&v.source),
            v.reviews,
            crate::rules::star_figure(w.buyer_view_threshold),
            if v.judged { "" } else { ", too few to judge" }
        ));
    }
    if w.buyer_views.is_empty() {
        out.push_str(r#"<div class="figure"><b>–</b><span>no rated reviews yet</span></div>"#);
    }
    out.push_str(&format!(
        r#"<div class="figure mentions-week"><b>{}</b><span>mentions this week (last week {})</span></div>"#,
        this.mentions,
        last.map(|l| l.mentions.to_string()).unwrap_or_else(|| "–".into())
    ));
    out.push_str(&format!(
        r#"<div class="figure negative-week"><b>{}</b><span>negative this week (last week {})</span></div>"#,
        fmt_pct(this.negative_share()),
        fmt_pct(last.and_then(|l| l.negative_share()))
    ));
    out.push_str(&format!(
        r#"<div class="figure open-alerts"><b>{}</b><span>open alerts</span></div>"#,
        w.open_alerts
    ));
    out
}

fn sources_table(w: &WatchSummary, tz: Tz) -> String {
    if w.sources.is_empty() {
        return r#"<p class="muted small">No sources.</p>"#.into();
    }
    let mut out = String::from(
        r#"<div class="scroll"><table class="small"><thead><tr><th>Source</th><th>Last fetch</th><th>When</th></tr></thead><tbody>"#,
    );
    for st in &w.sources {
        let (badge, when, err, failed) = match &st.last_run {
            Some(r) => (
                run_badge(&r.status),
                fmt_time(r.started_at, tz),
                match (&r.error_kind, &r.error) {
                    (Some(k), Some(e)) => format!("<br>{}: {}", esc(k), esc(e)),
                    (Some(k), None) => format!("<br>{}", esc(k)),
                    (None, Some(e)) => format!("<br>{}", esc(e)),
                    _ => String::new(),
                },
                r.status == "failed",
            ),
            None => (
                r#"<span class="muted">never</span>"#.to_string(),
                "–".into(),
                String::new(),
                false,
            ),
        };
        out.push_str(&format!(
            r#"<tr{}><td>{} <span class="muted">{}</span></td><td>{badge}{err}</td><td>{when}</td></tr>"#,
            if failed { r#" class="fail""# } else { "" },
            esc(&st.source),
            esc(&st.kind)
        ));
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `/`: a card per active watch.
pub async fn overview(State(s): State<WebState>) -> PageResult {
    let now = Utc::now();
    let watches: Vec<_> = s
        .store
        .watches()
        .await?
        .into_iter()
        .filter(|w| w.active)
        .collect();
    let summaries = data::summaries(&s, &watches, now).await?;
    let zones = Zones::of_watches(&s.config, &watches);
    let mut body = String::from("<h1>Overview</h1>");
    if summaries.is_empty() {
        body.push_str(
            r#"<p class="muted">No watches yet. Add a <code>[[watch]]</code> to the configuration.</p>"#,
        );
    }
    body.push_str(r#"<div class="cards">"#);
    for w in &summaries {
        body.push_str(&format!(
            r#"<article class="card {}" id="watch-{}"><h2>{} {}</h2><ul class="reasons">{}</ul><div class="figures">{}</div>{}</article>"#,
            w.health.as_str(),
            w.id,
            watch_link(&w.name),
            health_badge(w.health),
            w.reasons
                .iter()
                .map(|r| format!("<li>{}</li>", esc(r)))
                .collect::<String>(),
            week_figures(w),
            sources_table(w, zones.of(&w.name))
        ));
    }
    body.push_str("</div>");
    ok("Overview", Nav::Overview, &body)
}

fn short_week(label: &str) -> String {
    label
        .split_once('-')
        .map(|(_, w)| w.to_string())
        .unwrap_or_else(|| label.to_string())
}

fn short_day(label: &str) -> String {
    label.get(5..).unwrap_or(label).to_string()
}

fn volume_chart(
    aria: &str,
    periods: &[crate::trends::Period],
    short: fn(&str) -> String,
) -> String {
    let labels: Vec<String> = periods.iter().map(|p| short(&p.label)).collect();
    let col = |f: fn(&crate::store::PeriodStats) -> i64| -> Vec<f64> {
        periods.iter().map(|p| f(&p.stats) as f64).collect()
    };
    charts::stacked_bars(
        aria,
        &labels,
        &[
            Series {
                name: "negative",
                colour: charts::NEGATIVE,
                values: col(|s| s.negative),
            },
            Series {
                name: "neutral",
                colour: charts::NEUTRAL,
                values: col(|s| s.neutral),
            },
            Series {
                name: "positive",
                colour: charts::POSITIVE,
                values: col(|s| s.positive),
            },
            Series {
                name: "not scored",
                colour: charts::UNSCORED,
                values: col(|s| s.mentions - s.scored()),
            },
        ],
    )
}

/// The text, meta line, owner reply and (when asked) triage form of a mention.
pub fn mention_html(m: &TriagedMention, tz: Tz, csrf: &str, back: &str, triage: bool) -> String {
    let sm = &m.mention;
    let label = sm.sentiment.map(|s| s.label);
    let label_class = label.map(|l| l.as_str()).unwrap_or("unscored");
    let sentiment = match sm.sentiment {
        Some(s) => format!(
            r#"<span class="badge sent-{0}">{0} {1:+.2}</span>"#,
            s.label.as_str(),
            s.score
        ),
        None => r#"<span class="badge">not scored</span>"#.into(),
    };
    let status = m.status();
    let triage_info = match &m.triage {
        Some(t) => format!(
            r#"<span class="badge status triage-status">{}</span>{}{}"#,
            status.as_str(),
            t.assignee
                .as_deref()
                .map(|a| format!(" <span>assigned to {}</span>", esc(a)))
                .unwrap_or_default(),
            t.note
                .as_deref()
                .map(|n| format!(r#" <span class="note">note: {}</span>"#, esc(n)))
                .unwrap_or_default()
        ),
        None => r#"<span class="badge status triage-status">open</span>"#.into(),
    };
    let title = sm
        .mention
        .title
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .map(|t| format!("<h3>{}</h3>", esc(t)))
        .unwrap_or_default();
    let reply = sm
        .mention
        .owner_reply
        .as_deref()
        .map(|r| {
            format!(
                r#"<div class="reply"><b>Owner reply{}:</b> {}</div>"#,
                sm.mention
                    .owner_reply_at
                    .map(|t| format!(" ({})", fmt_time(t, tz)))
                    .unwrap_or_default(),
                esc(r)
            )
        })
        .unwrap_or_default();
    let form = if triage {
        triage_form(m, csrf, back)
    } else {
        String::new()
    };
    format!(
        r#"<article class="mention {label_class}" id="m{id}"><div class="meta"><a href="/mentions/{id}">#{id}</a><span>{watch} · {source}</span><span>{when}</span>{author}{stars}{sentiment}{triage_info}{link}</div>{title}<div class="text">{text}</div>{reply}{form}</article>"#,
        id = sm.id,
        watch = esc(&sm.watch),
        source = esc(&sm.source),
        when = fmt_time(sm.mention.published_at, tz),
        author = sm
            .mention
            .author
            .as_deref()
            .map(|a| format!("<span>by {}</span>", esc(a)))
            .unwrap_or_default(),
        stars = html::stars(sm.mention.rating),
        link = html::original_link(sm.mention.url.as_deref()),
        text = esc(&sm.mention.text),
    )
}

fn triage_form(m: &TriagedMention, csrf: &str, back: &str) -> String {
    let current = m.status();
    let options: String = TriageStatus::ALL
        .iter()
        .map(|s| {
            format!(
                r#"<option value="{0}"{1}>{0}</option>"#,
                s.as_str(),
                if *s == current { " selected" } else { "" }
            )
        })
        .collect();
    let t = m.triage.as_ref();
    format!(
        r#"<form class="inline triage" method="post" action="/mentions/{id}/triage">{hidden}<label>Status<select name="status">{options}</select></label><label>Assigned to<input name="assignee" maxlength="200" value="{assignee}" placeholder="name or email"></label><label>Note<input name="note" maxlength="2000" value="{note}"></label><label>By<input name="by" maxlength="200" placeholder="your name"></label><button type="submit">Save</button></form>"#,
        id = m.mention.id,
        hidden = form_fields(csrf, back),
        assignee = esc(t.and_then(|t| t.assignee.as_deref()).unwrap_or("")),
        note = esc(t.and_then(|t| t.note.as_deref()).unwrap_or("")),
    )
}

/// Whether a mention gets a triage form: the negative ones, low stars, or already
/// triaged.
fn wants_triage(m: &TriagedMention) -> bool {
    m.triage.is_some()
        || m.mention
            .sentiment
            .is_some_and(|s| s.label == Label::Negative)
        || m.mention.mention.rating.is_some_and(|r| r <= 2)
}

fn alerts_table(alerts: &[AlertState], tz: Tz, csrf: &str, back: &str) -> String {
    if alerts.is_empty() {
        return r#"<p class="muted">No alerts in the last 90 days.</p>"#.into();
    }
    let now = Utc::now();
    let mut out = String::from(
        r#"<div class="scroll"><table class="alerts"><thead><tr><th>Severity</th><th>Alert</th><th>State</th><th></th></tr></thead><tbody>"#,
    );
    for a in alerts {
        let al = &a.alert;
        let mut state = format!(
            "{}<br><span class=\"small muted\">opened {}</span>",
            run_badge(&al.status),
            fmt_time(al.opened_at, tz)
        );
        if let Some(t) = al.resolved_at {
            state.push_str(&format!(
                "<br><span class=\"small muted\">resolved {}</span>",
                fmt_time(t, tz)
            ));
        }
        if let Some(t) = a.acknowledged_at {
            state.push_str(&format!(
                "<br><span class=\"small acknowledged\">acknowledged {}</span>",
                fmt_time(t, tz)
            ));
        }
        if let Some(t) = a.snoozed_until.filter(|t| *t > now) {
            state.push_str(&format!(
                "<br><span class=\"small snoozed\">snoozed until {}</span>",
                fmt_time(t, tz)
            ));
        }
        let actions = if al.status == "open" {
            let ack = if a.acknowledged_at.is_none() {
                format!(
                    r#"<form class="inline" method="post" action="/alerts/{}/acknowledge">{}<button type="submit">Acknowledge</button></form>"#,
                    al.id,
                    form_fields(csrf, back)
                )
            } else {
                String::new()
            };
            format!(
                r#"{ack}<form class="inline" method="post" action="/alerts/{}/snooze">{}<label>Snooze<select name="hours"><option value="4">4 hours</option><option value="24" selected>1 day</option><option value="168">1 week</option><option value="0">no snooze</option></select></label><button type="submit" class="quiet">Snooze</button></form>"#,
                al.id,
                form_fields(csrf, back)
            )
        } else {
            String::new()
        };
        let evidence: String = al
            .evidence
            .iter()
            .take(3)
            .map(|e| {
                format!(
                    r#"<li><a href="/mentions/{}">{}</a> {}</li>"#,
                    e.mention_id,
                    esc(&e.source),
                    esc(&e.excerpt)
                )
            })
            .collect();
        out.push_str(&format!(
            r#"<tr id="alert-{}"><td><span class="badge {}">{}</span></td><td><b>{}</b><br>{}{}{}</td><td>{state}</td><td>{actions}</td></tr>"#,
            al.id,
            match al.severity.as_str() {
                "red" => "red",
                "amber" => "amber",
                _ => "status",
            },
            esc(&al.severity),
            esc(&al.title),
            esc(&al.summary),
            if al.action.is_empty() {
                String::new()
            } else {
                format!("<br><i>{}</i>", esc(&al.action))
            },
            if evidence.is_empty() {
                String::new()
            } else {
                format!(r#"<ul class="small">{evidence}</ul>"#)
            }
        ));
    }
    out.push_str("</tbody></table></div>");
    out
}

/// `/watch/{name}`: charts, buyer's view, feedback loop, alerts.
pub async fn watch(State(s): State<WebState>, Path(name): Path<String>) -> PageResult {
    let now = Utc::now();
    let w = resolve_watch(&s.store, &name)
        .await?
        .ok_or_else(|| Failure::NotFound(format!("There is no watch named “{name}”.")))?;
    let (tz, settings) = watch_settings(&s.config, &w);
    // The page shows no per-source series: only the watch's weeks and days.
    let parts = crate::trends::Parts {
        days: true,
        sources: false,
    };
    // The trends (mostly the database's work) and the drivers (mostly ours) at once.
    let (t, drivers) = tokio::try_join!(
        async {
            crate::trends::watch_trends_parts(
                &s.store, w.id, &w.name, tz, &settings, 12, now, parts,
            )
            .await
            .map_err(PageError::from)
        },
        drivers_section(&s, &w, now),
    )?;
    let threshold = settings.buyer_view_threshold;
    let back = format!("/watch/{}", path_escape(&w.name));
    let csrf = s.csrf_token();
    let mut body = format!(
        r#"<h1>{} {}</h1><ul class="reasons">{}</ul>"#,
        esc(&w.name),
        health_badge(t.health),
        t.reasons
            .iter()
            .map(|r| format!("<li>{}</li>", esc(r)))
            .collect::<String>()
    );

    // Figures.
    let status = s.store.source_status().await?;
    let summary = data::summary_of(&s, &w, &t, &settings, &status).await?;
    let since = now - Duration::days(30);
    let loop_figures = s.store.triage_summary(w.id, since).await?;
    body.push_str(&format!(
        r#"<div class="figures">{}<div class="figure open-negative"><b>{}</b><span>open negative mentions (30 days)</span></div><div class="figure first-action"><b>{}</b><span>median time to first action</span></div><div class="figure reply-share"><b>{}</b><span>negative reviews with an owner reply ({} of {})</span></div></div>"#,
        week_figures(&summary),
        loop_figures.open_negative,
        fmt_hours(loop_figures.median_hours_to_first_action),
        fmt_pct(loop_figures.reply_share()),
        loop_figures.negative_replied,
        loop_figures.negative_replyable
    ));

    // Charts.
    let week_labels: Vec<String> = t.weeks.iter().map(|p| short_week(&p.label)).collect();
    let ratings: Vec<Option<f64>> = t.weeks.iter().map(|p| p.stats.mean_rating).collect();
    let views: Vec<(String, Option<f64>)> = t
        .buyer_views
        .iter()
        .map(|v| (v.source.clone(), v.average_rating))
        .collect();
    body.push_str(r#"<h2>Trends</h2><div class="charts">"#);
    body.push_str(&format!(
        r#"<figure class="chart" id="chart-weekly"><h3>Mentions per week, by sentiment</h3>{}</figure>"#,
        volume_chart("Mentions per week by sentiment", &t.weeks, short_week)
    ));
    body.push_str(&format!(
        r#"<figure class="chart" id="chart-daily"><h3>Mentions per day (14 days)</h3>{}</figure>"#,
        volume_chart("Mentions per day by sentiment", &t.days, short_day)
    ));
    body.push_str(&format!(
        r#"<figure class="chart" id="chart-rating"><h3>Mean star rating per week</h3>{}</figure>"#,
        charts::line_chart(
            "Mean star rating per week",
            &week_labels,
            &ratings,
            (1.0, 5.0),
            Some(threshold),
            "mean rating"
        )
    ));
    body.push_str(&format!(
        r#"<figure class="chart" id="chart-buyer-view"><h3>Buyer's view rating vs {}</h3>{}</figure>"#,
        crate::rules::star_figure(threshold),
        if views.is_empty() {
            r#"<p class="muted">No rated reviews yet.</p>"#.to_string()
        } else {
            charts::rating_bars("Buyer's view rating per source", &views, threshold)
        }
    ));
    // The buyer's view as it stood at the end of each week, per rated source.
    for v in &t.buyer_views {
        let mut history = Vec::with_capacity(t.weeks.len());
        for p in &t.weeks {
            history.push(
                s.store
                    .buyer_view_rating_at(
                        v.source_id,
                        p.to.min(now),
                        settings.buyer_view_size as i64,
                    )
                    .await?,
            );
        }
        body.push_str(&format!(
            r#"<figure class="chart buyer-view-history" id="chart-buyer-view-history-{}"><h3>Buyer's view on {} at each week's end vs {}</h3>{}</figure>"#,
            v.source_id,
            esc(&v.source),
            crate::rules::star_figure(threshold),
            charts::line_chart(
                &format!("Buyer's view rating on {} per week", v.source),
                &week_labels,
                &history,
                (1.0, 5.0),
                Some(threshold),
                "buyer's view"
            )
        ));
    }
    body.push_str("</div>");

    // The buyer's view.
    body.push_str(&format!(
        r#"<h2>The buyer's view</h2><p class="muted small">The {} most recent rated reviews per source: what a buyer reads first.</p>"#,
        settings.buyer_view_size
    ));
    if t.buyer_views.is_empty() {
        body.push_str(r#"<p class="muted">No rated reviews yet.</p>"#);
    }
    for v in &t.buyer_views {
        body.push_str(&format!(
            r#"<section class="buyer-view-list"><h3>{} <span class="muted small">{} · average {}★{}</span></h3><div class="scroll"><table class="small"><thead><tr><th>Stars</th><th>Date</th><th>Review</th><th>Sentiment</th></tr></thead><tbody>"#,
            esc(&v.source),
            esc(&v.kind),
            fmt_rating(v.average_rating),
            v.published
                .as_ref()
                .map(|p| format!(", the source shows {:.2}", p.rating))
                .unwrap_or_default()
        ));
        for r in &v.reviews {
            let text: String = r.mention.text.chars().take(280).collect();
            body.push_str(&format!(
                r#"<tr><td>{}</td><td>{}</td><td><a href="/mentions/{}">{}</a></td><td>{}</td></tr>"#,
                html::stars(r.mention.rating),
                fmt_time(r.mention.published_at, tz),
                r.id,
                esc(&text),
                r.sentiment
                    .map(|s| format!(
                        r#"<span class="badge sent-{0}">{0}</span>"#,
                        s.label.as_str()
                    ))
                    .unwrap_or_default()
            ));
        }
        body.push_str("</tbody></table></div></section>");
    }

    // What drives negativity: the last seven days against the 28 before.
    body.push_str(&drivers);

    // Competitors side by side.
    let rivals = data::competitors(&s, &w).await?;
    if !rivals.is_empty() {
        let mut all = vec![w.clone()];
        all.extend(rivals);
        let rows = data::summaries(&s, &all, now).await?;
        body.push_str(r#"<h2>Competitors</h2><div class="scroll"><table><thead><tr><th>Watch</th><th>Health</th><th>Buyer's view</th><th>Mentions this week</th><th>Negative</th><th>Mean rating</th></tr></thead><tbody>"#);
        for r in &rows {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                watch_link(&r.name),
                health_badge(r.health),
                r.buyer_views
                    .iter()
                    .map(|v| format!("{} {}★", esc(&v.source), fmt_rating(v.average_rating)))
                    .collect::<Vec<_>>()
                    .join("<br>"),
                r.this_week.stats.mentions,
                fmt_pct(r.this_week.stats.negative_share()),
                fmt_rating(r.this_week.stats.mean_rating)
            ));
        }
        body.push_str("</tbody></table></div>");
    }

    // The feedback loop: open negative mentions.
    let open = MentionFilter {
        watch_id: Some(w.id),
        label: Some(Label::Negative),
        status: Some(TriageStatus::Open),
        since: Some(since),
        ..Default::default()
    };
    let list = s.store.find_mentions(&open, 0, 20).await?;
    body.push_str(&format!(
        r#"<h2>Open negative mentions</h2><p class="small"><a href="/mentions?watch={}&amp;sentiment=negative&amp;status=open">All open negative mentions</a></p>"#,
        query_escape(&w.name)
    ));
    if list.is_empty() {
        body.push_str(r#"<p class="muted">None open in the last 30 days.</p>"#);
    }
    for m in &list {
        body.push_str(&mention_html(m, tz, csrf, &back, true));
    }
    // Recently handled ones, so a change made here is visible here.
    let handled = s
        .store
        .find_mentions(
            &MentionFilter {
                watch_id: Some(w.id),
                label: Some(Label::Negative),
                since: Some(since),
                ..Default::default()
            },
            0,
            200,
        )
        .await?;
    let handled: Vec<_> = handled
        .into_iter()
        .filter(|m| m.triage.is_some() && m.status() != TriageStatus::Open)
        .take(10)
        .collect();
    if !handled.is_empty() {
        body.push_str(
            r#"<details class="handled"><summary>Recently handled negative mentions</summary>"#,
        );
        for m in &handled {
            body.push_str(&mention_html(m, tz, csrf, &back, true));
        }
        body.push_str("</details>");
    }

    // Alert history.
    let alerts = s
        .store
        .alert_states(Some(w.id), now - Duration::days(90), 50)
        .await?;
    body.push_str("<h2>Alerts</h2>");
    body.push_str(&alerts_table(&alerts, tz, csrf, &back));
    ok(&w.name, Nav::None, &body)
}

/// The mention list counts matches up to this many.
const MENTION_COUNT_CAP: i64 = 10_000;

/// "What drives negativity": terms over-represented in the last seven days' negative
/// mentions against the 28 days before (as the weekly digest finds them), each with its
/// customer-journey stage and an example.
async fn drivers_section(
    s: &WebState,
    w: &crate::store::WatchRow,
    now: chrono::DateTime<Utc>,
) -> Result<String, PageError> {
    // At most the newest of the last seven days and of the 28 days before are read
    // (the digest's limits), and the section says so, rather than a page reading a
    // flood of mentions into memory.
    drivers_section_within(s, w, now, crate::digest::report::DRIVER_LIMITS).await
}

async fn drivers_section_within(
    s: &WebState,
    w: &crate::store::WatchRow,
    now: chrono::DateTime<Utc>,
    limits: crate::digest::report::DriverLimits,
) -> Result<String, PageError> {
    use crate::digest::journey::JourneyMap;
    use crate::store::MentionQuery;
    let from = now - Duration::days(7);
    // One more than the limit: whether there were more than it says whether to say so.
    let newest = |since, until, limit: i64| MentionQuery {
        watch_id: Some(w.id),
        since: Some(since),
        until: Some(until),
        limit: Some(limit + 1),
        ..Default::default()
    };
    let mut recent = s.store.mentions(&newest(from, now, limits.recent)).await?;
    let mut before = s
        .store
        .mentions(&newest(from - Duration::days(28), from, limits.baseline))
        .await?;
    let recent_capped = recent.len() as i64 > limits.recent;
    let before_capped = before.len() as i64 > limits.baseline;
    recent.truncate(limits.recent as usize);
    before.truncate(limits.baseline as usize);
    let journey = s
        .config
        .watch(&w.name)
        .map(|c| JourneyMap::with_extra(&c.digest.journey))
        .unwrap_or_default();
    let drivers = crate::digest::report::negativity_drivers(&recent, &before, &journey);
    let mut out = String::from(
        r#"<h2>What drives negativity</h2><p class="muted small">Terms found more often in the last 7 days' negative mentions than in the 28 days before, with the step of the customer journey they concern.</p>"#,
    );
    if recent_capped || before_capped {
        let mut read = Vec::new();
        if recent_capped {
            read.push(format!(
                "the newest {} of the last 7 days' mentions",
                limits.recent
            ));
        }
        if before_capped {
            read.push(format!(
                "the newest {} mentions of the 28 days before",
                limits.baseline
            ));
        }
        out.push_str(&format!(
            r#"<p class="muted small drivers-capped">There are more mentions than these figures count: they read only {}.</p>"#,
            read.join(" and ")
        ));
    }
    if drivers.is_empty() {
        out.push_str(
            r#"<p class="muted drivers-none">No term stands out in the last 7 days' negative mentions.</p>"#,
        );
        return Ok(out);
    }
    out.push_str(r#"<div class="scroll"><table class="drivers small"><thead><tr><th>Term</th><th>Journey stage</th><th>Negative mentions</th><th>Before</th><th>Example</th></tr></thead><tbody>"#);
    for d in &drivers {
        out.push_str(&format!(
            r#"<tr><td><b>{}</b></td><td>{}</td><td>{}</td><td>{}</td><td>{} <span class="muted">{}</span></td></tr>"#,
            esc(&d.term),
            esc(d.stage.as_deref().unwrap_or("–")),
            d.mentions,
            d.baseline_mentions,
            esc(&d.example.excerpt),
            esc(&d.example.source)
        ));
    }
    out.push_str("</tbody></table></div>");
    Ok(out)
}

fn select(name: &str, current: Option<&str>, options: &[(String, String)]) -> String {
    let mut out = format!(r#"<select name="{name}"><option value="">any</option>"#);
    for (value, label) in options {
        let selected = current.is_some_and(|c| c.eq_ignore_ascii_case(value));
        out.push_str(&format!(
            r#"<option value="{}"{}>{}</option>"#,
            esc(value),
            if selected { " selected" } else { "" },
            esc(label)
        ));
    }
    out.push_str("</select>");
    out
}

/// `/mentions`: the filterable, paginated list.
pub async fn mentions(
    State(s): State<WebState>,
    p: Result<Query<MentionParams>, QueryRejection>,
    uri: axum::http::Uri,
) -> PageResult {
    let p = query(p)?;
    let (filter, _) = p.filter(&s.store, &s.config).await?;
    let page_no = p.page()?;
    let size = p.size(25, MAX_PAGE_SIZE)?;
    // Counted up to a cap: past it the page says "10000+" (and the pager goes on while
    // pages are full) instead of reading every matching mention's sentiment.
    let counted = s
        .store
        .count_found_mentions_upto(&filter, Some(MENTION_COUNT_CAP + 1))
        .await?;
    let capped = counted > MENTION_COUNT_CAP;
    let items = s
        .store
        .find_mentions(&filter, (page_no - 1) * size, size)
        .await?;
    let back = uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/mentions".into());

    let stored = s.store.watches().await?;
    // The list may hold several watches' mentions: each is shown on its own clock.
    let zones = Zones::of_watches(&s.config, &stored);
    let watches: Vec<(String, String)> = stored
        .into_iter()
        .map(|w| (w.name.clone(), w.name))
        .collect();
    let sources: Vec<(String, String)> = s
        .store
        .sources(filter.watch_id)
        .await?
        .into_iter()
        .map(|src| {
            (
                src.id.to_string(),
                format!("{} · {}", src.watch_name, src.name),
            )
        })
        .collect();
    let labels: Vec<(String, String)> = ["negative", "neutral", "positive"]
        .iter()
        .map(|l| (l.to_string(), l.to_string()))
        .collect();
    let stars: Vec<(String, String)> = ["1", "2", "3", "4", "5", "1-2", "4+"]
        .iter()
        .map(|v| (v.to_string(), format!("{v}★")))
        .collect();
    let statuses: Vec<(String, String)> = TriageStatus::ALL
        .iter()
        .map(|t| (t.as_str().to_string(), t.as_str().to_string()))
        .collect();
    let input = |name: &str, kind: &str, value: Option<&str>| {
        format!(
            r#"<input type="{kind}" name="{name}" value="{}">"#,
            esc(value.unwrap_or(""))
        )
    };
    let mut body = String::from("<h1>Mentions</h1>");
    body.push_str(&format!(
        r#"<form class="inline filters" method="get" action="/mentions"><label>Watch{}</label><label>Source{}</label><label>Sentiment{}</label><label>Stars{}</label><label>From{}</label><label>To{}</label><label>Text{}</label><label>Status{}</label><button type="submit">Filter</button> <a href="/mentions">clear</a></form>"#,
        select("watch", p.watch(), &watches),
        select("source", p.source(), &sources),
        select("sentiment", p.sentiment(), &labels),
        select("stars", p.stars(), &stars),
        input("from", "date", p.from()),
        input("to", "date", p.to()),
        input("q", "search", p.q()),
        select("status", p.status(), &statuses),
    ));
    let total = if capped {
        // At least this many: the cap, or all the pages up to this one when further.
        MENTION_COUNT_CAP.max((page_no - 1) * size + items.len() as i64)
    } else {
        counted
    };
    let plus = if capped { "+" } else { "" };
    let first = if total == 0 {
        0
    } else {
        (page_no - 1) * size + 1
    };
    let last = ((page_no - 1) * size + items.len() as i64).max(0);
    body.push_str(&format!(
        r#"<p class="muted result-count">{first}–{last} of {total}{plus} mentions</p>"#
    ));
    for m in &items {
        body.push_str(&mention_html(
            m,
            zones.of(&m.mention.watch),
            s.csrf_token(),
            &back,
            wants_triage(m),
        ));
    }
    let q = p.filter_query();
    let sep = if q.is_empty() { "" } else { "&amp;" };
    let q = esc(&q).into_owned();
    let mut pager = String::from(r#"<nav class="pager">"#);
    if page_no > 1 {
        pager.push_str(&format!(
            r#"<a rel="prev" href="/mentions?{q}{sep}page={}">← newer</a>"#,
            page_no - 1
        ));
    }
    pager.push_str(&format!(
        r#"<span>page {page_no} of {}{plus}</span>"#,
        ((total + size - 1) / size).max(1)
    ));
    if page_no * size < total || (capped && items.len() as i64 == size) {
        pager.push_str(&format!(
            r#"<a rel="next" href="/mentions?{q}{sep}page={}">older →</a>"#,
            page_no + 1
        ));
    }
    pager.push_str("</nav>");
    body.push_str(&pager);
    ok("Mentions", Nav::Mentions, &body)
}

/// `/mentions/{id}`: one mention, its triage and history.
pub async fn mention(State(s): State<WebState>, Path(id): Path<String>) -> PageResult {
    let id: i64 = id
        .parse()
        .map_err(|_| Failure::NotFound("There is no such mention.".into()))?;
    let m = s
        .store
        .triaged_mention(id)
        .await?
        .ok_or_else(|| Failure::NotFound("There is no such mention.".into()))?;
    let tz = Zones::load(&s.store, &s.config).await?.of(&m.mention.watch);
    let back = format!("/mentions/{id}");
    let mut body = format!("<h1>Mention #{id}</h1>");
    body.push_str(&mention_html(&m, tz, s.csrf_token(), &back, true));
    let history = s.store.triage_history(id).await?;
    body.push_str("<h2>Triage history</h2>");
    if history.is_empty() {
        body.push_str(r#"<p class="muted">Nobody has acted on this mention yet.</p>"#);
    } else {
        body.push_str(r#"<div class="scroll"><table class="small"><thead><tr><th>When</th><th>Who</th><th>Status</th><th>Assigned to</th><th>Note</th></tr></thead><tbody>"#);
        for h in &history {
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                fmt_time(h.changed_at, tz),
                esc(h.changed_by.as_deref().unwrap_or("–")),
                h.status.as_str(),
                esc(h.assignee.as_deref().unwrap_or("")),
                esc(h.note.as_deref().unwrap_or(""))
            ));
        }
        body.push_str("</tbody></table></div>");
    }
    ok(&format!("Mention #{id}"), Nav::Mentions, &body)
}

/// `/sources`: schedules, runs, next run, fetch now.
pub async fn sources(State(s): State<WebState>) -> PageResult {
    let zones = Zones::load(&s.store, &s.config).await?;
    let status = s.store.source_status().await?;
    let csrf = s.csrf_token();
    let mut body = String::from(
        r#"<h1>Sources</h1><div class="scroll"><table class="sources"><thead><tr><th>Watch</th><th>Source</th><th>Schedule</th><th>Last run</th><th>Items</th><th>Next run</th><th>Mentions</th><th></th></tr></thead><tbody>"#,
    );
    for st in &status {
        // A source runs on its watch's clock.
        let tz = zones.of(&st.watch);
        let failed = st.last_run.as_ref().is_some_and(|r| r.status == "failed");
        let (last, items) = match &st.last_run {
            Some(r) => (
                format!(
                    "{} {}{}",
                    run_badge(&r.status),
                    fmt_time(r.started_at, tz),
                    match (&r.error_kind, &r.error) {
                        (None, None) => String::new(),
                        (k, e) => format!(
                            r#"<br><span class="error-kind">{}</span> {}"#,
                            esc(k.as_deref().unwrap_or("")),
                            esc(e.as_deref().unwrap_or(""))
                        ),
                    }
                ),
                format!(
                    "{} seen, {} new, {} updated, {} skipped",
                    r.items_seen, r.items_new, r.items_updated, r.items_skipped
                ),
            ),
            None => (r#"<span class="muted">never</span>"#.into(), "–".into()),
        };
        let polled = st.enabled && st.kind != crate::store::PUSH_KIND;
        let fetch = if polled {
            format!(
                r#"<form class="inline" method="post" action="/sources/{}/fetch">{}<button type="submit" class="quiet">Fetch now</button></form>"#,
                st.source_id,
                form_fields(csrf, "/sources")
            )
        } else {
            String::new()
        };
        let runs = s.store.fetch_runs(st.source_id, 10).await?;
        let history: String = if runs.len() > 1 {
            let rows: String = runs
                .iter()
                .map(|r| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}/{}/{}/{}</td><td>{} {}</td></tr>",
                        fmt_time(r.started_at, tz),
                        run_badge(&r.status),
                        r.items_seen,
                        r.items_new,
                        r.items_updated,
                        r.items_skipped,
                        esc(r.error_kind.as_deref().unwrap_or("")),
                        esc(r.error.as_deref().unwrap_or(""))
                    )
                })
                .collect();
            format!(
                r#"<details><summary>last {} runs</summary><table class="small"><thead><tr><th>Started</th><th>Result</th><th>seen/new/upd/skip</th><th>Error</th></tr></thead><tbody>{rows}</tbody></table></details>"#,
                runs.len()
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            r#"<tr id="source-{}"{}><td>{}</td><td>{} <span class="muted small">{}{}</span>{history}</td><td><code>{}</code></td><td>{last}</td><td class="small">{items}</td><td>{}</td><td>{}</td><td>{fetch}</td></tr>"#,
            st.source_id,
            if failed { r#" class="fail""# } else { "" },
            watch_link(&st.watch),
            esc(&st.source),
            esc(&st.kind),
            if st.enabled { "" } else { ", disabled" },
            esc(if st.schedule.is_empty() { "pushed" } else { &st.schedule }),
            st.next_run_at
                .map(|t| fmt_time(t, tz))
                .unwrap_or_else(|| "–".into()),
            st.mentions
        ));
    }
    body.push_str("</tbody></table></div>");
    ok("Sources", Nav::Sources, &body)
}

// ---- Forms -------------------------------------------------------------------------

fn check_csrf(s: &WebState, token: &str) -> Result<(), PageError> {
    if same_secret(token, s.csrf_token()) {
        Ok(())
    } else {
        Err(Failure::Forbidden(
            "This form has expired or did not come from this dashboard; reload the page and try again."
                .into(),
        )
        .into())
    }
}

/// The id in a form's path; any other text names nothing there is (a 404 page, not
/// axum's plain-text 400).
fn page_id(id: &str, missing: &str) -> Result<i64, PageError> {
    id.parse()
        .map_err(|_| Failure::NotFound(missing.to_string()).into())
}

fn see_other(back: Option<&str>) -> Response {
    Redirect::to(&local_target(back)).into_response()
}

fn field(v: Option<String>, name: &str, max: usize) -> Result<Option<String>, PageError> {
    match v {
        Some(v) if v.chars().count() > max => {
            Err(Failure::BadRequest(format!("{name} is longer than {max} characters")).into())
        }
        v => Ok(v),
    }
}

#[derive(Deserialize)]
pub struct TriageForm {
    #[serde(default)]
    csrf: String,
    back: Option<String>,
    status: Option<String>,
    assignee: Option<String>,
    note: Option<String>,
    by: Option<String>,
}

pub async fn triage(
    State(s): State<WebState>,
    Path(id): Path<String>,
    Form(f): Form<TriageForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let id: i64 = id
        .parse()
        .map_err(|_| Failure::NotFound("There is no such mention.".into()))?;
    let status = match f.status.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => Some(
            TriageStatus::parse(v)
                .ok_or_else(|| Failure::BadRequest(format!("unknown status `{v}`")))?,
        ),
    };
    let change = TriageUpdate {
        status,
        assignee: field(f.assignee, "the assignee", 200)?,
        note: field(f.note, "the note", 2000)?,
    };
    let by = field(f.by, "the name", 200)?;
    s.store
        .update_triage(id, &change, by.as_deref(), Utc::now())
        .await?
        .ok_or_else(|| Failure::NotFound("There is no such mention.".into()))?;
    Ok(see_other(f.back.as_deref()))
}

#[derive(Deserialize)]
pub struct SimpleForm {
    #[serde(default)]
    csrf: String,
    back: Option<String>,
    hours: Option<String>,
}

pub async fn acknowledge_alert(
    State(s): State<WebState>,
    Path(id): Path<String>,
    Form(f): Form<SimpleForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let id = page_id(&id, "There is no such alert.")?;
    if !s.store.acknowledge_alert(id, Utc::now()).await? {
        return Err(Failure::NotFound("There is no such alert.".into()).into());
    }
    Ok(see_other(f.back.as_deref()))
}

pub async fn snooze_alert(
    State(s): State<WebState>,
    Path(id): Path<String>,
    Form(f): Form<SimpleForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let id = page_id(&id, "There is no such alert.")?;
    let hours: i64 = f
        .hours
        .as_deref()
        .unwrap_or("24")
        .trim()
        .parse()
        .ok()
        .filter(|h| (0..=24 * 90).contains(h))
        .ok_or_else(|| Failure::BadRequest("snooze for 0 to 2160 hours".into()))?;
    let until = (hours > 0).then(|| Utc::now() + Duration::hours(hours));
    if !s.store.snooze_alert(id, until).await? {
        return Err(Failure::NotFound("There is no such alert.".into()).into());
    }
    Ok(see_other(f.back.as_deref()))
}

pub async fn fetch_now(
    State(s): State<WebState>,
    Path(id): Path<String>,
    Form(f): Form<SimpleForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    let id = page_id(&id, "There is no such source.")?;
    if !s.store.request_fetch(id, Utc::now()).await? {
        return Err(Failure::BadRequest(
            "That source is unknown, disabled or pushed; nothing polls it.".into(),
        )
        .into());
    }
    Ok(see_other(f.back.as_deref()))
}

// ---- Login -------------------------------------------------------------------------

#[derive(Deserialize)]
pub struct NextParam {
    next: Option<String>,
}

pub async fn login_form(
    State(s): State<WebState>,
    q: Result<Query<NextParam>, QueryRejection>,
) -> PageResult {
    let q = query(q)?;
    let next = local_target(q.next.as_deref());
    if s.security.token.is_none() {
        return Ok(Redirect::to(&next).into_response());
    }
    let body = format!(
        r#"<h1>Log in</h1><form class="inline" method="post" action="/login">{}<label>Access token<input type="password" name="token" autocomplete="current-password" required></label><button type="submit">Log in</button></form>"#,
        form_fields(s.csrf_token(), &next)
    );
    ok("Log in", Nav::None, &body)
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    back: Option<String>,
    #[serde(default)]
    token: String,
}

pub async fn login(
    State(s): State<WebState>,
    peer: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    Form(f): Form<LoginForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    // The TCP peer, or the client a trusted proxy names (served with connect info;
    // without it the peer is unknown, no header is believed, and one count holds for
    // every client).
    let client = peer.map(|Extension(ConnectInfo(addr))| {
        s.security
            .trusted_proxies
            .client_address(addr.ip(), &headers)
    });
    let Some(token) = &s.security.token else {
        return Ok(see_other(f.back.as_deref()));
    };
    // Locked means locked for the right token too, or the lock would not slow guessing.
    match s.security.try_login(client, f.token.trim(), token) {
        Err(wait) => {
            let secs = wait.as_secs() + 1;
            let mut res = html::error_page(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Too many wrong tokens; try again in {secs} s."),
            );
            res.headers_mut().insert(
                header::RETRY_AFTER,
                secs.to_string().parse().expect("a number"),
            );
            return Ok(res);
        }
        Ok(false) => {
            return Ok(html::error_page(
                StatusCode::UNAUTHORIZED,
                "That is not the access token.",
            ));
        }
        Ok(true) => {}
    }
    let session = s.security.start_session(client);
    let mut res = see_other(f.back.as_deref());
    res.headers_mut().insert(
        header::SET_COOKIE,
        format!(
            "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            super::SESSION_LIFETIME.as_secs()
        )
        .parse()
        .expect("cookie header"),
    );
    Ok(res)
}

pub async fn logout(
    State(s): State<WebState>,
    headers: axum::http::HeaderMap,
    Form(f): Form<SimpleForm>,
) -> PageResult {
    check_csrf(&s, &f.csrf)?;
    // The session ends on the server, not only in this browser's cookie jar.
    s.security.end_session(&headers);
    let mut res = see_other(Some("/"));
    res.headers_mut().insert(
        header::SET_COOKIE,
        format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
            .parse()
            .expect("cookie header"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Engagement, Mention, ScoredMention, Sentiment};
    use std::sync::Arc;

    fn mention(id: String, text: &str, label: Label, at: chrono::DateTime<Utc>) -> ScoredMention {
        ScoredMention {
            mention: Mention {
                external_id: id,
                url: None,
                author: None,
                title: None,
                text: text.into(),
                rating: None,
                engagement: Engagement::default(),
                language: Some("en".into()),
                published_at: at,
                owner_reply: None,
                owner_reply_at: None,
                extra: None,
            },
            sentiment: Some(Sentiment {
                label,
                score: if label == Label::Negative { -0.8 } else { 0.8 },
                confidence: 0.9,
            }),
        }
    }

    /// The cells of the drivers table's row for `term`.
    fn driver_row(section: &str, term: &str) -> Vec<String> {
        let start = section
            .find(&format!("<tr><td><b>{term}</b>"))
            .unwrap_or_else(|| panic!("no row for {term}: {section}"));
        let row = &section[start..start + section[start..].find("</tr>").unwrap()];
        row.split("<td>")
            .skip(1)
            .map(|c| c.split("</td>").next().unwrap().to_string())
            .collect()
    }

    #[tokio::test]
    async fn the_drivers_read_at_most_their_limits_and_say_so() {
        for db in crate::testutil::all().await.unwrap() {
            let config =
                crate::config::parse("[[watch]]\nname = \"Acme\"\n", "test.toml", &[]).unwrap();
            db.store.sync_config(&config).await.unwrap();
            let w = db.store.watch_by_name("Acme").await.unwrap().unwrap();
            let src = db.store.push_source(w.id, "store").await.unwrap();
            let now = Utc::now();
            let mut batch = Vec::new();
            for i in 0..6 {
                let at = now - Duration::hours(10 + i);
                batch.push(mention(
                    format!("n{i}"),
                    &format!("The lid leaks, kettle number {i}"),
                    Label::Negative,
                    at,
                ));
            }
            for i in 0..3 {
                let at = now - Duration::days(10 + i);
                batch.push(mention(
                    format!("p{i}"),
                    &format!("Boils fast, kettle number {i}"),
                    Label::Positive,
                    at,
                ));
            }
            db.store
                .ingest(&src, &batch, Some(("test", "1")))
                .await
                .unwrap();
            let s = WebState::new(db.store.clone(), Arc::new(config));

            let Ok(all) = drivers_section(&s, &w, now).await else {
                panic!("the section failed on {}", db.label)
            };
            assert_eq!(driver_row(&all, "lid leaks")[2], "6", "{}: {all}", db.label);
            assert!(!all.contains("drivers-capped"), "{}: {all}", db.label);

            let limits = crate::digest::report::DriverLimits {
                recent: 4,
                baseline: 2,
            };
            let Ok(capped) = drivers_section_within(&s, &w, now, limits).await else {
                panic!("the section failed on {}", db.label)
            };
            assert_eq!(
                driver_row(&capped, "lid leaks")[2],
                "4",
                "{}: {capped}",
                db.label
            );
            assert!(
                capped.contains("they read only the newest 4 of the last 7 days' mentions and the newest 2 mentions of the 28 days before."),
                "{}: {capped}",
                db.label
            );
        }
    }
}
