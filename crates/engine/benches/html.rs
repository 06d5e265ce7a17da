//! Throughput of `visible_text_into` on a ~20 KB spam-like HTML page.

use std::hint::black_box;

use chaff::decode::html::visible_text_into;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// A ~20 KB page the way bulk mailers write them: a head with style and script,
/// table layout, inline styles, hidden filler, comments inside words, entities.
fn page() -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>本期优惠</title>\
         <style type=\"text/css\">body{margin:0;font-family:Arial}.x{color:#333}\
         td{padding:4px}</style><script>var t=1;if(a<b){t=2}</script></head>\n\
         <body bgcolor=\"#ffffff\"><table width=\"600\" cellpadding=\"0\" cellspacing=\"0\">\n",
    );
    let rows = [
        "<tr><td class=\"x\" style=\"font-size:14px;color:#333\">尊敬的客户您好，本公司长期\
         <b>代</b><!-- z -->开<span>发</span>票，税点低，可验证后付款。</td></tr>\n",
        "<tr><td><font color=\"red\" size=\"4\">&#20813;&#36153;咨询</font>&nbsp;&nbsp;\
         <a href=\"http://example.com/?id=123&amp;ref=mail\">点击这里</a> 了解详情&hellip;</td></tr>\n",
        "<tr><td><span style=\"display:none\">Lorem ipsum dolor sit amet, consectetur \
         adipiscing elit, sed do eiusmod tempor.</span>Dear customer, your account has \
         been selected for a <strong>FREE</strong> upgrade. Reply today!</td></tr>\n",
        "<tr><td><p>优惠活动火热进行中！全场商品<em>八折</em>起，<br>详情请访问官网。</p>\
         <div style=\"font-size:0px\">正常邮件内容用于干扰过滤器的文字</div></td></tr>\n",
        "<tr><td><img src=\"cid:logo\" alt=\"logo\" width=\"120\" height=\"40\">\
         <p style=\"margin:0 0 10px 0\">Copyright &copy; 2024 Example Ltd. All rights \
         reserved. &lt;unsubscribe&gt;</p></td></tr>\n",
    ];
    let mut k = 0;
    while s.len() < 20_000 {
        s.push_str(rows[k % rows.len()]);
        k += 1;
    }
    s.push_str("</table></body></html>\n");
    s
}

fn bench(c: &mut Criterion) {
    let html = page();
    let mut group = c.benchmark_group("html");
    group.throughput(Throughput::Bytes(html.len() as u64));
    let mut out = String::new();
    group.bench_function("spam_page_20KB", |b| {
        b.iter(|| {
            visible_text_into(black_box(&html), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
