//! Throughput of `normalise_into` on realistic mixed Chinese/English mail text.

use std::hint::black_box;

use chaff::normalise::{Normalised, normalise_into};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// About 1 MB of mail-like text: mostly simplified Chinese with English words,
/// numbers, URLs and punctuation, plus a sprinkling of the evasions the normaliser
/// folds (traditional chars, full-width letters, spaced letters, zero-width chars).
fn corpus() -> String {
    const SENTENCES: &[&str] = &[
        "尊敬的客户您好，本公司长期代开各类发票，税点低，可验证后付款。",
        "Dear customer, thank you for your order #48213. Your parcel will ship within 3 business days.\n",
        "会议定于下周三下午两点在三楼会议室召开，请各部门负责人准时参加，并提前准备好季度总结材料。",
        "优惠活动火热进行中！全场商品八折起，详情请访问 http://example.com/sale?id=123 了解更多。\n",
        "Please find attached the quarterly report. Let me know if you have any questions about the figures.\n",
        "我們提供專業的網站設計服務，價格優惠，歡迎來電諮詢。",
        "ＦＲＥＥ ｍｏｎｅｙ，点击领取 f r e e 礼品，免 费 咨 询，赚\u{200B}钱 发-财！\n",
        "项目进度：前端开发已完成80%，后端接口联调预计于2024年5月20日结束，测试环境部署中。",
        "Hi team, the meeting has been moved to Thursday at 10:00 AM. The agenda is unchanged.\n",
        "关于加强网络安全管理的通知：请勿点击来历不明的链接，定期修改密码，发现异常及时报告。\n",
    ];
    let mut out = String::with_capacity(1 << 20);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    while out.len() < 1 << 20 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        out.push_str(SENTENCES[(seed >> 33) as usize % SENTENCES.len()]);
    }
    out
}

fn bench(c: &mut Criterion) {
    let text = corpus();
    let mut group = c.benchmark_group("normalise");
    group.throughput(Throughput::Bytes(text.len() as u64));
    let mut out = Normalised::new();
    group.bench_function("mixed_zh_en_1MB", |b| {
        b.iter(|| {
            normalise_into(black_box(&text), &mut out);
            black_box(out.text.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
