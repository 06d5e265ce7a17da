//! The classifier as a library: training on a small labelled set changes verdicts
//! as expected, `learn` corrects a verdict, a saved model scores identically when
//! loaded, a damaged or foreign model file is refused with a clear error, and a
//! running engine picks up a replaced model file.

use chaff::classify::format::{self, ModelError};
use chaff::classify::{ClassifierConfig, Model};
use chaff::{Action, Config, Engine, Envelope, Error};
use chaff_train::learn_message;
use chaff_train::{Trainer, prepare};
use std::path::{Path, PathBuf};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../corpus")
}

fn labelled_corpus() -> Vec<(bool, Vec<u8>)> {
    std::fs::read_to_string(corpus().join("index"))
        .expect("corpus index")
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(label, p)| {
            (
                label == "spam",
                std::fs::read(corpus().join(p.trim())).expect("corpus message"),
            )
        })
        .collect()
}

fn mail(subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: someone@example.org\r\nTo: you@example.net\r\nSubject: {subject}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// A small synthetic labelled set: invoice/stock spam and work/family ham.
fn synthetic() -> Vec<(bool, Vec<u8>)> {
    let spam = [
        (
            "代开发票",
            "本公司常年代开各类发票，税点优惠，欢迎来电咨询 13800138000",
        ),
        ("股票内幕", "内幕消息，股票翻倍，免费加入会员群，名额有限"),
        ("发票优惠", "增值税发票代开，价格优惠，诚信合作，联系王先生"),
        (
            "cheap pills",
            "buy cheap pills online, discount viagra, no prescription",
        ),
        ("赚钱机会", "在家轻松赚钱，日入千元，免费培训，马上报名"),
        (
            "winner",
            "congratulations you won a prize, claim your reward now, click here",
        ),
    ];
    let ham = [
        (
            "周五组会",
            "各位同学，周五下午两点在实验室开组会，请准备进度报告",
        ),
        ("论文修改", "老师您好，附件是修改后的论文，请您审阅，谢谢"),
        ("回家过年", "妈妈说今年早点回家过年，记得买火车票"),
        (
            "meeting notes",
            "attached are the notes from the project meeting, see you tuesday",
        ),
        ("篮球赛", "明天下午的篮球赛改到体育馆，大家别走错了"),
        (
            "lunch",
            "are we still on for lunch tomorrow at the usual place",
        ),
    ];
    let mut v = Vec::new();
    for round in 0..4 {
        for (s, b) in spam {
            v.push((true, mail(s, &format!("{b} #{round}"))));
        }
        for (s, b) in ham {
            v.push((false, mail(s, &format!("{b} #{round}"))));
        }
    }
    v
}

fn train(engine: &Engine, set: &[(bool, Vec<u8>)]) -> Model {
    let cfg = ClassifierConfig {
        bits: 18,
        ..ClassifierConfig::default()
    };
    let mut trainer = Trainer::new(&cfg);
    for (spam, raw) in set {
        trainer.add(prepare(engine, &cfg.feature_config(), raw, *spam));
    }
    trainer.finish(engine.keywords()).0
}

fn engine() -> Engine {
    Engine::new(&Config::default()).expect("engine")
}

fn with_model(model: Model) -> Engine {
    Engine::builder().model(model).build().expect("engine")
}

#[test]
fn training_on_a_small_set_changes_verdicts_as_expected() {
    let plain = engine();
    let model = train(&plain, &synthetic());
    assert!(model.meta.thresholds.is_some(), "trained thresholds");
    let scanner = with_model(model);
    let env = Envelope::default();
    // New messages, not in the training set, of both kinds.
    let spam = mail("发票", "代开增值税发票，税点优惠，联系 13800138000");
    let ham = mail(
        "组会通知",
        "同学们，下周一上午在实验室开组会，请带上论文进度报告",
    );
    let before_spam = plain.scan(&spam, &env);
    let after_spam = scanner.scan(&spam, &env);
    let after_ham = scanner.scan(&ham, &env);
    assert!(
        after_spam.score > after_ham.score,
        "{after_spam:?}\n{after_ham:?}"
    );
    assert_ne!(after_spam.action, Action::Deliver, "{after_spam:?}");
    assert_eq!(after_ham.action, Action::Deliver, "{after_ham:?}");
    assert!(after_spam.score > before_spam.score);
    // The explanation names tokens both ways, spam-wards first.
    assert!(!after_spam.tokens.is_empty());
    assert!(after_spam.tokens[0].weight > 0.0, "{:?}", after_spam.tokens);
    assert!(
        after_ham.tokens.iter().any(|t| t.weight < 0.0),
        "{:?}",
        after_ham.tokens
    );
    let json = serde_json::to_value(&after_spam).expect("json");
    assert!(json["tokens"][0]["token"].is_string(), "{json}");
}

#[test]
fn learn_corrects_a_wrong_verdict_both_ways() {
    let reader = engine();
    let mut model = train(&reader, &synthetic());
    let env = Envelope::default();
    let odd = mail("季度总结", "请查收本季度的项目总结，周五前反馈意见");
    // Whatever the model made of it, each correction puts it on the side it is
    // told, with the score moving the right way.
    for spam in [false, true, false] {
        let l = learn_message(&reader, &mut model, &odd, spam);
        let v = with_model(model.clone()).scan(&odd, &env);
        assert_eq!(
            v.action == Action::Deliver,
            !spam,
            "spam={spam} {l:?} {v:?}"
        );
        assert!((l.after - v.score).abs() < 1e-9, "{l:?} {v:?}");
        if l.steps > 0 {
            assert_eq!(l.after > l.before, spam, "{l:?}");
        }
    }
}

#[test]
fn a_saved_model_loads_and_scores_identically() {
    let plain = engine();
    let corpus = labelled_corpus();
    let model = train(&plain, &corpus);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("chaff.model");
    format::save(&model, &path).expect("save");
    let loaded = format::load(&path).expect("load");
    // (Not assert_eq!: a model's Debug output is millions of characters.)
    assert_eq!(loaded.meta, model.meta);
    assert!(
        loaded.weights == model.weights,
        "weights differ after save/load"
    );

    let in_memory = with_model(model);
    let config = Config {
        model: Some(path),
        ..Config::default()
    };
    let from_file = Engine::new(&config).expect("engine with model file");
    let env = Envelope::default();
    for (_, raw) in &corpus {
        let a = in_memory.scan(raw, &env);
        let b = from_file.scan(raw, &env);
        assert_eq!(a, b);
    }
    // And it learned the corpus: every spam outranks every ham but a few.
    let mut scored: Vec<(f64, bool)> = corpus
        .iter()
        .map(|(spam, raw)| (from_file.scan(raw, &env).score, *spam))
        .collect();
    scored.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(chaff_train::eval::roc_auc(&scored) > 0.95);
}

#[test]
fn damaged_or_foreign_model_files_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = train(&engine(), &synthetic());
    let bytes = format::to_bytes(&model).expect("encode");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", bytes[..bytes.len() / 2].to_vec(), "truncated"),
        ("header-only", bytes[..20].to_vec(), "truncated"),
        (
            "foreign",
            b"%PDF-1.4 not a model at all".to_vec(),
            "not a chaff model",
        ),
        ("empty", Vec::new(), "not a chaff model"),
        (
            "damaged",
            {
                let mut b = bytes.clone();
                let mid = b.len() / 2;
                b[mid] ^= 0x40;
                b
            },
            "checksum",
        ),
    ];
    for (name, content, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &content).expect("write");
        let config = Config {
            model: Some(path.clone()),
            ..Config::default()
        };
        match Engine::new(&config) {
            Err(Error::Model { path: p, source }) => {
                assert_eq!(p, path);
                let message = source.to_string();
                assert!(message.contains(want), "{name}: {message}");
            }
            other => panic!("{name}: expected a model error, got {other:?}"),
        }
    }
    assert!(matches!(
        format::from_bytes(&bytes[..bytes.len() - 1]),
        Err(ModelError::Truncated { .. })
    ));
    let missing = Config {
        model: Some(dir.path().join("no-such-model")),
        ..Config::default()
    };
    assert!(matches!(Engine::new(&missing), Err(Error::Model { .. })));
}

#[test]
fn a_running_engine_picks_up_a_replaced_model() {
    let reader = engine();
    let mut model = train(&reader, &synthetic());
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("live.model");
    format::save(&model, &path).expect("save");
    let mut config = Config {
        model: Some(path.clone()),
        ..Config::default()
    };
    config.classifier.reload_interval_ms = 0;
    let scanner = Engine::new(&config).expect("engine");
    let env = Envelope::default();
    let odd = mail("季度总结", "请查收本季度的项目总结，周五前反馈意见");
    for spam in [false, true] {
        learn_message(&reader, &mut model, &odd, spam);
        format::save(&model, &path).expect("save");
        let v = scanner.scan(&odd, &env);
        assert_eq!(v.action == Action::Deliver, !spam, "reloaded: {v:?}");
    }
    let v = scanner.scan(&odd, &env);

    assert_eq!(scanner.model_reload_error(), None);

    // A broken replacement is not picked up: the last good model keeps serving,
    // and the engine says why.
    std::fs::write(&path, b"garbage").expect("write");
    assert_eq!(scanner.scan(&odd, &env), v);
    let why = scanner
        .model_reload_error()
        .expect("the failed reload is reported");
    assert!(
        why.contains("live.model") && why.contains("not a chaff model"),
        "{why}"
    );
}

#[test]
fn model_file_learners_wait_for_each_other_and_count_what_they_learned() {
    use chaff_train::learn::{ModelFile, ModelFileError};
    use std::time::Duration;
    let reader = engine();
    let model = train(&reader, &synthetic());
    let (spam_before, ham_before) = (model.meta.stats.learned_spam, model.meta.stats.learned_ham);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("m.model");
    format::save(&model, &path).expect("save");
    let odd = mail("季度总结", "请查收本季度的项目总结，周五前反馈意见");

    let mut first = ModelFile::open(&path).expect("open");
    // A second learner cannot get in while the first holds the model.
    match ModelFile::open_within(&path, Duration::from_millis(50)) {
        Err(e @ ModelFileError::Busy(..)) => {
            assert!(e.to_string().contains("another learner"), "{e}")
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    let l = first.learn(&reader, &odd, true);
    assert!(l.after > l.before, "{l:?}");
    first.learn(&reader, &odd, true);
    // Released by save: the next learner sees the first one's update.
    first.save().expect("save");
    let mut second = ModelFile::open_within(&path, Duration::from_millis(50)).expect("open");
    second.learn(&reader, &odd, false);
    drop(second); // Dropped unsaved: nothing written, lock released.
    let saved = format::load(&path).expect("load");
    assert_eq!(saved.meta.stats.learned_spam, spam_before + 2);
    assert_eq!(saved.meta.stats.learned_ham, ham_before);
    assert!(ModelFile::open_within(&path, Duration::ZERO).is_ok());
    // A missing model names its file.
    let e = ModelFile::open(&dir.path().join("none.model")).unwrap_err();
    assert!(e.to_string().contains("none.model"), "{e}");
}
