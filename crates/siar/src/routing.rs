//! Who is owed a release, from the configured partners and lists.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use siar_model::{Category, ReleaseContent, Router, Target};

use crate::config::Config;
use crate::schedule::When;

struct Route {
    target: Target,
    categories: Vec<Category>,
    when: When,
}

/// The [`Router`] built from `[[partners]]` and `[[lists]]`: a target matches when its
/// category filter is empty or shares a category with the release; disabled partners match
/// nothing. A scheduled target's deliveries are due at its schedule's next firing.
pub struct ConfigRouter {
    routes: Vec<Route>,
    tz: Tz,
}

impl ConfigRouter {
    /// Builds the router; the config must have passed validation.
    pub fn new(config: &Config) -> Self {
        let cats = |v: &[String]| v.iter().filter_map(|c| Category::parse(c).ok()).collect();
        let when = |s: &str| When::parse(s).unwrap_or(When::Instant);
        let partners = config.partners.iter().filter(|p| p.enabled).map(|p| Route {
            target: Target::Partner(p.id.clone()),
            categories: cats(&p.categories),
            when: when(&p.schedule),
        });
        let lists = config.lists.iter().map(|l| Route {
            target: Target::List(l.id.clone()),
            categories: cats(&l.categories),
            when: when(&l.mode),
        });
        Self {
            routes: partners.chain(lists).collect(),
            tz: config.timezone(),
        }
    }
}

impl Router for ConfigRouter {
    fn targets(&self, content: &ReleaseContent) -> Vec<Target> {
        self.routes
            .iter()
            .filter(|r| {
                r.categories.is_empty()
                    || r.categories.iter().any(|c| content.categories.contains(c))
            })
            .map(|r| r.target.clone())
            .collect()
    }

    fn due_at(&self, target: &Target, now: DateTime<Utc>) -> DateTime<Utc> {
        let lookup = match target {
            Target::Recipient { list, .. } => Target::List(list.clone()),
            t => t.clone(),
        };
        self.routes
            .iter()
            .find(|r| r.target == lookup)
            .map_or(now, |r| r.when.next_after(now, self.tz))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_schedules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            r#"
[[partners]]
id = "mc"
url = "https://mc.example/hook"
format = "ninjs"
secret_env = "X"
[[partners]]
id = "radio"
url = "https://radio.example/hook"
format = "radio-script"
schedule = "0 30 5,11,17 * * *"
secret_env = "Y"
categories = ["pemerintahan"]
[[partners]]
id = "off"
url = "https://off.example/hook"
format = "ninjs"
enabled = false
[[lists]]
id = "jurnalis"
name = "J"
"#,
        )
        .unwrap();
        let (config, _) = Config::load(Some(&path), Vec::new()).unwrap();
        let r = ConfigRouter::new(&config);
        let mut c = ReleaseContent::default();
        let names = |r: &ConfigRouter, c: &ReleaseContent| {
            r.targets(c)
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&r, &c), ["partner:mc", "list:jurnalis"]);
        c.categories = vec![Category::parse("pemerintahan").unwrap()];
        assert_eq!(
            names(&r, &c),
            ["partner:mc", "partner:radio", "list:jurnalis"]
        );
        let now = DateTime::parse_from_rfc3339("2026-11-29T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(r.due_at(&Target::Partner("mc".into()), now), now);
        assert_eq!(
            r.due_at(&Target::Partner("radio".into()), now).to_rfc3339(),
            "2026-11-29T21:30:00+00:00"
        );
    }
}
