//! Real headless Chromium driven over WebDriver: `chromedriver` as a child
//! process on a free loopback port, `fantoccini` as the client, and the
//! helpers the flows share (polling JavaScript conditions, keyboard input,
//! screenshots, page hygiene checks).
//!
//! Without Chromium the tests print why and pass, unless
//! `ENERGYLOAD_REQUIRE_BROWSER=1` (set by `.ci/run`) makes that a failure.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

/// One browser at a time: the machines running these tests have two cores.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

/// How long a condition on the page may take to come true.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where Chromium and chromedriver are.
struct Binaries {
    chromium: PathBuf,
    chromedriver: PathBuf,
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn find_binaries() -> Option<Binaries> {
    let chromium = std::env::var_os("ENERGYLOAD_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which(&["chromium", "chromium-browser", "google-chrome"]))?;
    let chromedriver = std::env::var_os("ENERGYLOAD_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| which(&["chromedriver"]))?;
    Some(Binaries { chromium, chromedriver })
}

/// True when the browser tests must run (CI).
fn browser_required() -> bool {
    std::env::var("ENERGYLOAD_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

/// Runs an async browser test body on its own runtime. The body gets `None`
/// (and the test passes after saying so) when Chromium is not installed,
/// unless the browser is required.
pub fn browser_test<F, Fut>(body: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(bins) = find_binaries() else {
        assert!(
            !browser_required(),
            "ENERGYLOAD_REQUIRE_BROWSER=1 but chromium or chromedriver was not found in PATH \
             (install chromium and chromium-driver)"
        );
        // Straight to stderr, past the test harness's output capture, so
        // that a plain `cargo test` says why nothing ran.
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "browser tests skipped: chromium not found (install chromium and chromium-driver)"
        );
        return;
    };
    let _one_at_a_time = ONE_BROWSER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async move {
        let browser = Browser::start(&bins).await;
        body(browser).await;
    });
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A chromedriver child with one Chromium session. Dropping it ends the
/// session (which closes Chromium) and stops chromedriver.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    driver: Child,
    driver_url: String,
    session_id: String,
    _profile: TempDir,
}

impl Browser {
    async fn start(bins: &Binaries) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(profile.path().join("chromedriver.log")).unwrap();
        let port = free_port();
        let driver = Command::new(&bins.chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bins.chromedriver.display()));
        let driver_url = format!("http://127.0.0.1:{port}/");
        // chromedriver answers /status once it listens.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver_call("GET", &format!("{driver_url}status"))
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready on port {port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = json!([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            format!("--user-data-dir={}", profile.path().join("profile").display()),
            // The screen headless Chromium pretends to have follows this
            // size: larger than any viewport asked for plus its frame.
            "--window-size=1600,1200",
            "--force-device-scale-factor=1",
            "--lang=en-GB",
        ]);
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"binary": bins.chromium.display().to_string(), "args": args}),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector).capabilities(caps).connect(&driver_url).await {
            Ok(c) => c,
            Err(e) => {
                let log =
                    std::fs::read_to_string(profile.path().join("chromedriver.log")).unwrap_or_default();
                let mut driver = driver;
                let _ = driver.kill();
                let _ = driver.wait();
                panic!("cannot open a Chromium session: {e}\nchromedriver log:\n{log}");
            }
        };
        let session_id = client.session_id().await.unwrap().unwrap_or_default();
        let browser = Self { client, driver, driver_url, session_id, _profile: profile };
        browser.install_violation_recorder().await;
        browser.set_viewport(1280, 800).await;
        browser
    }

    /// Records every `securitypolicyviolation` in `window.__cspViolations`,
    /// in every document from its very start (a DevTools script, which the
    /// page's CSP does not apply to: it is the test driver, not the page).
    async fn install_violation_recorder(&self) {
        let source = "window.__cspViolations = [];\
            document.addEventListener('securitypolicyviolation', (e) => {\
              window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') \
                + ' at ' + (e.sourceFile || '') + ':' + (e.lineNumber || 0));\
            });";
        self.client
            .issue_cmd(CdpCommand {
                cmd: "Page.addScriptToEvaluateOnNewDocument",
                params: json!({"source": source}),
            })
            .await
            .expect("install the CSP violation recorder");
    }

    /// Sizes the window so that the page's viewport is `width`×`height` CSS
    /// pixels (the window's frame differs between headless versions, and a
    /// resize may land after the call returns: measured again until it fits).
    pub async fn set_viewport(&self, width: u32, height: u32) {
        let want = json!([width, height]);
        self.client.set_window_size(width, height).await.unwrap();
        let mut inner = Value::Null;
        for _ in 0..30 {
            let m = self.js("return [innerWidth, innerHeight, outerWidth, outerHeight]").await;
            let n = |i: usize| m[i].as_i64().unwrap_or(0);
            inner = json!([n(0), n(1)]);
            if inner == want {
                return;
            }
            // The window is the viewport plus its frame (as the page sees it now).
            let frame_w = u32::try_from((n(2) - n(0)).max(0)).unwrap();
            let frame_h = u32::try_from((n(3) - n(1)).max(0)).unwrap();
            self.client.set_window_size(width + frame_w, height + frame_h).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(inner, want, "viewport size");
    }

    /// Runs a script (a function body; `arguments[i]` are `args`).
    pub async fn js_with(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// Runs a script without arguments.
    pub async fn js(&self, script: &str) -> Value {
        self.js_with(script, vec![]).await
    }

    /// Polls `script` until `done` accepts its value; returns that value.
    pub async fn wait_js(&self, what: &str, script: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let v = self.client.execute(script, vec![]).await.unwrap_or(Value::Null);
            if done(&v) {
                return v;
            }
            if Instant::now() > deadline {
                let shot = self.save_screenshot(&format!("failed-{}", slug(what))).await;
                panic!("timed out waiting for {what}; last value {v}; screenshot {}", shot.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `selector` matches an element that is shown.
    pub async fn wait_visible(&self, selector: &str) {
        let script = format!(
            "const e = document.querySelector({sel}); return !!e && e.getClientRects().length > 0 && !e.closest('[hidden]');",
            sel = json!(selector)
        );
        self.wait_js(&format!("{selector} to be shown"), &script, |v| v == &Value::Bool(true)).await;
    }

    /// Waits until `selector` matches no element.
    pub async fn wait_gone(&self, selector: &str) {
        let script = format!("return !document.querySelector({});", json!(selector));
        self.wait_js(&format!("{selector} to go away"), &script, |v| v == &Value::Bool(true)).await;
    }

    /// The trimmed text of the first element matching `selector`, once there.
    pub async fn text_of(&self, selector: &str) -> String {
        let script = format!(
            "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
            json!(selector)
        );
        let v = self.wait_js(&format!("{selector} to exist"), &script, Value::is_string).await;
        v.as_str().unwrap().to_string()
    }

    /// Clicks the element (a real WebDriver click, after scrolling it into view).
    pub async fn click(&self, selector: &str) {
        self.wait_visible(selector).await;
        let el = self.client.find(Locator::Css(selector)).await.unwrap();
        el.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
    }

    /// Replaces the value of an input by typing into it.
    pub async fn fill(&self, selector: &str, text: &str) {
        self.wait_visible(selector).await;
        let el = self.client.find(Locator::Css(selector)).await.unwrap();
        el.clear().await.unwrap();
        el.send_keys(text).await.unwrap_or_else(|e| panic!("type into {selector}: {e}"));
    }

    /// Opens the admin page at `admin_url`, signs in and waits for the dashboard.
    pub async fn sign_in(&self, admin_url: &str, username: &str, password: &str) {
        self.client.goto(admin_url).await.unwrap();
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("#sign-in-submit").await;
        self.wait_heading("Dashboard").await;
    }

    /// Goes to a hash route of the admin page (a different one than the
    /// current) and waits for the new page's heading.
    pub async fn route(&self, hash: &str, heading: &str) {
        self.js_with(
            "const h = document.querySelector('#view h1.page-title'); if (h) h.dataset.stale = '1';\
             location.hash = arguments[0];",
            vec![json!(hash)],
        )
        .await;
        self.wait_heading(heading).await;
    }

    /// Waits until the page's `h1.page-title` starts with `heading` and the
    /// page is no longer loading.
    pub async fn wait_heading(&self, heading: &str) {
        let script = "const h = document.querySelector('#view h1.page-title:not([data-stale])');\
                      const busy = document.querySelector('#view > .loading');\
                      return h && !busy ? h.textContent.trim() : null;";
        let want = heading.to_string();
        self.wait_js(&format!("page heading {heading:?}"), script, |v| {
            v.as_str().is_some_and(|t| t.starts_with(&want))
        })
        .await;
    }

    // ---------- keyboard ----------

    /// Types text with key actions (key down/up per character).
    pub async fn type_keys(&self, text: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for c in text.chars() {
            actions = actions.then(KeyAction::Down { value: c }).then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Presses one key (optionally with Shift held).
    pub async fn press(&self, key: Key, shift: bool) {
        let k = char::from(key);
        let shift_key = char::from(Key::Shift);
        let mut actions = KeyActions::new("keyboard".into());
        if shift {
            actions = actions.then(KeyAction::Down { value: shift_key });
        }
        actions = actions.then(KeyAction::Down { value: k }).then(KeyAction::Up { value: k });
        if shift {
            actions = actions.then(KeyAction::Up { value: shift_key });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// A short description of the focused element (`#id`, or tag + text).
    pub async fn focused(&self) -> String {
        self.js("const e = document.activeElement; if (!e) return '';\
             if (e.id) return '#' + e.id;\
             const nav = e.getAttribute('data-nav'); if (nav) return 'nav:' + nav;\
             return e.tagName.toLowerCase() + ':' + (e.getAttribute('href') || e.textContent.trim());")
            .await
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Presses Tab (or Shift+Tab) until the focused element is `target` (as
    /// [`Browser::focused`] names it); panics after `max` presses.
    pub async fn tab_to(&self, target: &str, backwards: bool, max: usize) {
        let mut seen = Vec::new();
        for _ in 0..max {
            self.press(Key::Tab, backwards).await;
            let now = self.focused().await;
            if now == target {
                return;
            }
            seen.push(now);
        }
        panic!("{target} not reached with {max} Tab presses; focus went through {seen:?}");
    }

    // ---------- page checks and screenshots ----------

    /// Asserts what every page must satisfy: no CSP violation so far, every
    /// loaded resource from the page's own origin, every form control
    /// labelled, every button named, and no error alert.
    pub async fn assert_page_clean(&self, page: &str) {
        let v = self.js("return window.__cspViolations || null;").await;
        assert_eq!(v, json!([]), "{page}: Content-Security-Policy violations (or the recorder is missing)");
        let foreign = self
            .js("return performance.getEntriesByType('resource').map((e) => e.name)\
                 .filter((u) => new URL(u).origin !== location.origin);")
            .await;
        assert_eq!(foreign, json!([]), "{page}: resources from another origin");
        let unlabelled = self
            .js(
                "return [...document.querySelectorAll('input, select, textarea')]\
                 .filter((e) => e.type !== 'hidden' && e.getClientRects().length)\
                 .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.getAttribute('aria-labelledby'))\
                 .map((e) => e.id || e.name || e.outerHTML.slice(0, 80));",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "{page}: form controls without a label");
        let unnamed = self
            .js(
                "return [...document.querySelectorAll('button, a[href]')]\
                 .filter((e) => e.getClientRects().length && !e.textContent.trim() && !e.getAttribute('aria-label'))\
                 .map((e) => e.outerHTML.slice(0, 80));",
            )
            .await;
        assert_eq!(unnamed, json!([]), "{page}: buttons or links without a name");
        let errors = self
            .js("return [...document.querySelectorAll('[data-testid=error]')].map((e) => e.textContent.trim());")
            .await;
        assert_eq!(errors, json!([]), "{page}: error alerts on the page");
    }

    /// Checks the page and saves a screenshot named `name`.
    pub async fn page_shot(&self, name: &str) {
        self.assert_page_clean(name).await;
        self.save_screenshot(name).await;
    }

    /// Saves a PNG screenshot under `<target>/screenshots/<name>.png`.
    pub async fn save_screenshot(&self, name: &str) -> PathBuf {
        // Let pending layout and fonts settle into a frame before capturing.
        let _ = self
            .client
            .execute_async(
                "requestAnimationFrame(() => requestAnimationFrame(() => arguments[0]()));",
                vec![],
            )
            .await;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // End the session so chromedriver closes Chromium, then stop it.
        if !self.session_id.is_empty() {
            let _ = driver_call("DELETE", &format!("{}session/{}", self.driver_url, self.session_id));
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A plain call to chromedriver (readiness, ending a session from `Drop`):
/// the JSON answer, or `None` when it is not reachable.
fn driver_call(method: &str, url: &str) -> Option<Value> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let req = ureq::http::Request::builder().method(method).uri(url).body(()).ok()?;
    let mut resp = agent.run(req).ok()?;
    serde_json::from_str(&resp.body_mut().read_to_string().ok()?).ok()
}

/// `$CARGO_TARGET_DIR/screenshots` (or `target/screenshots` in the package).
pub fn screenshot_dir() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => manifest.join(dir),
        _ => manifest.join("target"),
    };
    target.join("screenshots")
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).take(60).collect()
}

/// A Chrome DevTools command through chromedriver's `goog/cdp/execute`.
#[derive(Debug)]
struct CdpCommand {
    cmd: &'static str,
    params: Value,
}

impl WebDriverCompatibleCommand for CdpCommand {
    fn endpoint(&self, base_url: &url::Url, session_id: Option<&str>) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!("session/{}/goog/cdp/execute", session_id.unwrap_or_default()))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(json!({"cmd": self.cmd, "params": self.params}).to_string()))
    }
}
