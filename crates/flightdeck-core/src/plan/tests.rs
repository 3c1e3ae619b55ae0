use super::*;
use std::path::{Path, PathBuf};

const ROLLOUT: &str = "[rollout]\nname = \"checkout-api\"\nstable = \"v1.4.2\"\ncanary = \"v1.5.0\"\n";

fn repo_dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(sub)
}

/// The `.toml` files of `dir`, sorted so that failures are stable.
fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn parse_ok(extra: &str) -> Plan {
    Plan::parse("test.toml", &format!("{ROLLOUT}{extra}")).unwrap_or_else(|e| panic!("{e}"))
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[test]
fn invalid_plans_report_the_expected_error() {
    let dir = repo_dir("tests/invalid_plans");
    let files = toml_files(&dir);
    assert!(!files.is_empty(), "no invalid plans in {}", dir.display());
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let expected_path = path.with_extension("expected");
        let expected =
            std::fs::read_to_string(&expected_path).unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        let error =
            Plan::parse(&format!("tests/invalid_plans/{name}"), &text).expect_err(&format!("{name} should not parse"));
        assert_eq!(error.to_string(), expected.trim(), "{name}");
    }
}

#[test]
fn example_plans_parse() {
    let dir = repo_dir("examples/plans");
    let files = toml_files(&dir);
    assert!(!files.is_empty(), "no example plans in {}", dir.display());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = Plan::parse(&path.display().to_string(), &text) {
            panic!("{e}");
        }
    }
}

#[test]
fn minimal_plan_gets_every_default() {
    let plan = parse_ok("[analysis]\n");
    assert_eq!(plan.theme, None);
    let sim = Target { backend: BackendKind::Sim, group: "sim".into(), production: false, params: BTreeMap::new() };
    assert_eq!(plan.target, sim);
    assert_eq!(plan.analysis, AnalysisConfig::default());
    assert_eq!(plan.slo, Slo::default());
    let Strategy::Canary { stages } = &plan.strategy else { panic!("default strategy is canary") };
    let got: Vec<(u8, Duration, bool)> = stages.iter().map(|s| (s.weight, s.bake, s.approval)).collect();
    assert_eq!(got, [(1, mins(15), false), (10, mins(15), false), (50, mins(15), false), (100, Duration::ZERO, false)]);
}

#[test]
fn stage_fields_default_individually() {
    let plan = parse_ok(
        "[[strategy.stages]]\nweight = 5\n\n[[strategy.stages]]\nweight = 100\nbake = \"0s\"\napproval = true\n",
    );
    let Strategy::Canary { stages } = plan.strategy else { panic!("canary") };
    assert_eq!(stages[0], CanaryStage { weight: 5, bake: mins(15), approval: false });
    assert_eq!(stages[1], CanaryStage { weight: 100, bake: Duration::ZERO, approval: true });
}

#[test]
fn canary_stages_get_a_final_full_stage() {
    let plan = parse_ok("[strategy]\nstages = [{ weight = 5, bake = \"10m\", approval = true }, { weight = 25 }]\n");
    let got: Vec<(u8, Duration, bool, StageAction)> =
        plan.stages().iter().map(|s| (s.weight, s.bake, s.approval, s.action)).collect();
    assert_eq!(
        got,
        [
            (5, mins(10), true, StageAction::Weight),
            (25, mins(15), false, StageAction::Weight),
            (100, Duration::ZERO, false, StageAction::Weight),
        ]
    );
    assert_eq!(plan.strategy_name(), "canary");
}

#[test]
fn blue_green_defaults_and_stages() {
    let plan = parse_ok("[strategy]\nkind = \"blue-green\"\n");
    assert_eq!(plan.strategy, Strategy::BlueGreen { preview: mins(5), verification: mins(5), approval: false });
    let plan =
        parse_ok("[strategy]\nkind = \"blue-green\"\npreview = \"2m\"\nverification = \"30s\"\napproval = true\n");
    assert_eq!(plan.strategy_name(), "blue-green");
    assert_eq!(
        plan.stages(),
        [
            Stage { weight: 0, bake: mins(2), approval: false, action: StageAction::Preview },
            Stage { weight: 100, bake: Duration::from_secs(30), approval: true, action: StageAction::Switch },
        ]
    );
}

#[test]
fn rolling_defaults_and_stages() {
    let plan = parse_ok("[strategy]\nkind = \"rolling\"\n");
    assert_eq!(plan.strategy, Strategy::Rolling { batch_percent: 25, bake: mins(5) });
    let plan = parse_ok("[strategy]\nkind = \"rolling\"\nbatch_percent = 40\nbake = \"1h 30m\"\n");
    assert_eq!(plan.strategy_name(), "rolling");
    let stages = plan.stages();
    let weights: Vec<u8> = stages.iter().map(|s| s.weight).collect();
    assert_eq!(weights, [40, 80, 100]);
    assert!(stages.iter().all(|s| s.bake == mins(90) && s.action == StageAction::Batch && !s.approval));
}

#[test]
fn backend_parameters_are_kept_as_text() {
    let plan = parse_ok(
        "[target]\nbackend = \"haproxy\"\ngroup = \"edge-1\"\nproduction = true\nsocket = \"/run/haproxy.sock\"\n\
         stable_server = \"v1\"\ncanary_server = \"v2\"\nport = 8404\nmaint = false\n\n\
         [target.params]\nbackend = \"checkout\"\n",
    );
    let t = plan.target;
    assert_eq!((t.backend, t.group.as_str(), t.production), (BackendKind::Haproxy, "edge-1", true));
    let params: Vec<(&str, &str)> = t.params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(
        params,
        [
            ("backend", "checkout"),
            ("canary_server", "v2"),
            ("maint", "false"),
            ("port", "8404"),
            ("socket", "/run/haproxy.sock"),
            ("stable_server", "v1"),
        ]
    );
}

#[test]
fn every_backend_name_parses() {
    for name in BackendKind::NAMES {
        let kind = BackendKind::parse(name).unwrap_or_else(|| panic!("{name} parses"));
        assert_eq!(kind.name(), *name);
        // Journals store the kind through serde: the same name.
        assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{name}\""));
    }
    assert_eq!(BackendKind::NAMES.len(), 11);
    assert_eq!(BackendKind::parse("kubernetes"), None);
}

#[test]
fn full_plan_round_trips() {
    let text = r#"
        [rollout]
        name = "checkout-api"
        stable = "v1.4.2"
        canary = "v1.5.0"
        theme = "prod"

        [target]
        backend = "ecs"
        group = "prod-eu-1"
        production = true
        cluster = "prod"
        service = "checkout"

        [strategy]
        kind = "canary"
        stages = [
            { weight = 1, bake = "10m" },
            { weight = 5, bake = "10m", approval = true },
            { weight = 100, bake = "0s" },
        ]

        [analysis]
        interval = "30s"
        max_error_increase_pp = 0.5
        max_p99_increase_pct = 20
        min_requests = 500
        inconclusive_limit = 4
        alpha = 0.005
        confidence = 0.99
        max_error_rate_pct = 2.5
        max_p99_ms = 750.0

        [slo]
        objective_pct = 99.95
        window = "7d"

        [metrics]
        source = "prometheus"
        address = "http://127.0.0.1:9090"
        p99 = 'checkout_p99_ms{version="{{version}}"}'
    "#;
    let plan = Plan::parse("full.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let params = [("cluster", "prod"), ("service", "checkout")].map(|(k, v)| (k.to_owned(), v.to_owned()));
    let expected = Plan {
        name: "checkout-api".into(),
        stable: "v1.4.2".into(),
        canary: "v1.5.0".into(),
        theme: Some("prod".into()),
        target: Target {
            backend: BackendKind::Ecs,
            group: "prod-eu-1".into(),
            production: true,
            params: params.into(),
        },
        strategy: Strategy::Canary {
            stages: vec![
                CanaryStage { weight: 1, bake: mins(10), approval: false },
                CanaryStage { weight: 5, bake: mins(10), approval: true },
                CanaryStage { weight: 100, bake: Duration::ZERO, approval: false },
            ],
        },
        analysis: AnalysisConfig {
            interval: Duration::from_secs(30),
            max_error_increase_pp: 0.5,
            max_p99_increase_pct: 20.0,
            min_requests: 500,
            inconclusive_limit: 4,
            alpha: 0.005,
            confidence: 0.99,
            max_error_rate_pct: 2.5,
            max_p99_ms: 750.0,
            pass_unjudged_latency: false,
        },
        slo: Slo { objective_pct: 99.95, window: Duration::from_secs(7 * 24 * 3600) },
        metrics: MetricsConfig::Prometheus {
            address: "http://127.0.0.1:9090".into(),
            queries: PromQueries { p99: r#"checkout_p99_ms{version="{{version}}"}"#.into(), ..PromQueries::default() },
        },
        approvers: Vec::new(),
    };
    assert_eq!(plan, expected);
    // The validated model survives serialization (state is stored as JSON).
    let json = serde_json::to_string(&plan).unwrap();
    assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
}

#[test]
fn every_duration_is_accepted_up_to_its_bound_and_refused_past_it() {
    let cases = [
        ("[[strategy.stages]]\nweight = 10\nbake = \"{}\"\n", "strategy.stages[0].bake", "7d"),
        ("[strategy]\nkind = \"rolling\"\nbake = \"{}\"\n", "strategy.bake", "7d"),
        ("[strategy]\nkind = \"blue-green\"\npreview = \"{}\"\n", "strategy.preview", "7d"),
        ("[strategy]\nkind = \"blue-green\"\nverification = \"{}\"\n", "strategy.verification", "7d"),
        ("[analysis]\ninterval = \"{}\"\n", "analysis.interval", "1h"),
        ("[slo]\nwindow = \"{}\"\n", "slo.window", "1y"),
    ];
    for (template, field, max) in cases {
        parse_ok(&template.replace("{}", max));
        for over in [format!("{max} 1s"), "18446744073709552s".into(), "1000000000y".into()] {
            let text = format!("{ROLLOUT}{}", template.replace("{}", &over));
            let e = Plan::parse("d.toml", &text).expect_err(&over);
            assert_eq!(e.field, field);
            assert_eq!(e.message, format!("{over:?} is too long; allowed: at most {max}"));
        }
    }
}

#[test]
fn prometheus_keys_are_refused_without_a_prometheus_source() {
    for key in ["address", "requests", "errors", "p50", "p95", "p99", "version_label"] {
        // `source` left out means "backend" too.
        for source in ["", "source = \"backend\"\n"] {
            let text = format!("{ROLLOUT}[metrics]\n{source}{key} = 'x{{{{version}}}}'\n");
            let e = Plan::parse("m.toml", &text).expect_err(key);
            assert_eq!(e.field, format!("metrics.{key}"));
            assert!(e.message.starts_with(&format!("`{key}` only applies to source = \"prometheus\"")), "{e}");
        }
    }
    // Several: the first in the file is reported.
    let e = Plan::parse("m.toml", &format!("{ROLLOUT}[metrics]\np95 = 'a'\naddress = 'b'\n")).unwrap_err();
    assert_eq!(e.field, "metrics.p95");
}

#[test]
fn cloudwatch_metrics_take_their_dimensions_and_lag() {
    let plan = parse_ok("[metrics]\nsource = \"cloudwatch\"\ncanary_target_group = \"targetgroup/green/1\"\n");
    let expected = CloudwatchMetrics {
        load_balancer: None,
        stable_target_group: None,
        canary_target_group: Some("targetgroup/green/1".into()),
        lag: DEFAULT_CLOUDWATCH_LAG,
    };
    assert_eq!(plan.metrics, MetricsConfig::Cloudwatch(expected));
    let plan = parse_ok("[metrics]\nsource = \"cloudwatch\"\nlag = \"0s\"\n");
    assert!(matches!(plan.metrics, MetricsConfig::Cloudwatch(CloudwatchMetrics { lag, .. }) if lag.is_zero()));
    let e = Plan::parse("m.toml", &format!("{ROLLOUT}[metrics]\nsource = \"backend\"\nlag = \"1m\"\n")).unwrap_err();
    assert_eq!(e.field, "metrics.lag");
}

#[test]
fn cloudwatch_refuses_an_analysis_interval_that_is_not_whole_minutes() {
    let metrics = "[metrics]\nsource = \"cloudwatch\"\n";
    for (interval, said) in [("10s", "10s"), ("45s", "45s"), ("90s", "1m 30s")] {
        let text = format!("{ROLLOUT}[analysis]\ninterval = \"{interval}\"\n\n{metrics}");
        let e = Plan::parse("cw.toml", &text).unwrap_err();
        let line = text.lines().position(|l| l.starts_with("interval")).unwrap() + 1;
        assert_eq!((e.file.as_str(), e.line, e.field.as_str()), ("cw.toml", line, "analysis.interval"), "{e}");
        assert!(e.to_string().contains(&format!("{said} is not a whole number of minutes")), "{e}");
    }
    for interval in ["1m", "2m", "5m"] {
        parse_ok(&format!("[analysis]\ninterval = \"{interval}\"\n\n{metrics}"));
    }
    // Other sources have no such grid.
    parse_ok("[analysis]\ninterval = \"10s\"\n");
}

#[test]
fn positions_count_characters_not_bytes() {
    let text = "[rollout]\nname = \"é\"\nstable = \"v1\"\ncanary = \"v2\"\ntheme = \"ü\" ; x\n";
    let e = Plan::parse("u.toml", text).unwrap_err();
    assert_eq!((e.line, e.column, e.field.as_str()), (5, 13, "plan"));
}

#[test]
fn strategy_table_may_be_implicit() {
    // `[[strategy.stages]]` without `[strategy]`: TOML gives that table no span.
    let plan = parse_ok("[[strategy.stages]]\nweight = 20\n");
    assert_eq!(plan.stages().len(), 2);
}

#[test]
fn errors_inside_an_implicit_table_keep_their_path() {
    let e = Plan::parse("i.toml", &format!("{ROLLOUT}[[strategy.stages]]\nweight = 20\nwait = 1\n")).unwrap_err();
    assert_eq!((e.line, e.column, e.field.as_str()), (7, 1, "strategy.stages[0].wait"));
}

#[test]
fn prometheus_queries_default_to_the_batched_form_on_the_version_label() {
    let plan = parse_ok("[metrics]\nsource = \"prometheus\"\naddress = \"http://p:9090\"\n");
    let MetricsConfig::Prometheus { queries, .. } = plan.metrics else { panic!("{:?}", plan.metrics) };
    assert_eq!(queries, PromQueries::default());
    assert_eq!(queries.version_label, "version");
    assert_eq!(
        queries.requests,
        r#"sum by (version) (increase(http_requests_total{version=~"{{versions}}"}[{{interval}}]))"#
    );
    // Another label: the defaults follow it, and a written template is checked against it.
    let text = "[metrics]\nsource = \"prometheus\"\naddress = \"http://p:9090\"\nversion_label = \"revision\"\n\
                p99 = 'max by (revision) (p99_ms{revision=~\"{{versions}}\"})'\n";
    let MetricsConfig::Prometheus { queries, .. } = parse_ok(text).metrics else { unreachable!() };
    assert_eq!(queries.version_label, "revision");
    assert_eq!(queries.p50, PromQueries::batched("revision").p50);
    assert!(queries.p50.contains("sum by (le, revision)"), "{}", queries.p50);
    // An old plan's per-version template is kept as written.
    let text =
        "[metrics]\nsource = \"prometheus\"\naddress = \"http://p:9090\"\nerrors = 'sum(e{version=\"{{version}}\"})'\n";
    let MetricsConfig::Prometheus { queries, .. } = parse_ok(text).metrics else { unreachable!() };
    assert_eq!(queries.errors, r#"sum(e{version="{{version}}"})"#);
    // A journal written before `version_label` existed still reads.
    let mut old = serde_json::to_value(&queries).unwrap();
    old.as_object_mut().unwrap().remove("version_label");
    assert_eq!(serde_json::from_value::<PromQueries>(old).unwrap().version_label, "version");
}

#[test]
fn a_batched_query_that_drops_the_version_label_is_refused_where_it_is_written() {
    let text = format!(
        "{ROLLOUT}[metrics]\nsource = \"prometheus\"\naddress = \"http://p:9090\"\n\
         p95 = 'sum(rate(m{{version=~\"{{{{versions}}}}\"}}[1m]))'\n"
    );
    let e = Plan::parse("b.toml", &text).unwrap_err();
    assert_eq!((e.field.as_str(), e.line, e.column), ("metrics.p95", 8, 7));
    assert!(e.message.starts_with("`sum` here drops the `version` label"), "{e}");
}
