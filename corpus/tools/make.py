#!/usr/bin/env python3
"""Generate chaff's hand-made test corpus.

Writes corpus/ham/*.eml, corpus/spam/*.eml, corpus/index, corpus/EXPECT and
corpus/README.md.  Every message text below was written for this project; none
is taken from any real mail collection.  Output is byte-for-byte deterministic
(no clocks, no random module: "random" bytes come from SHA-256 in counter mode).

    python3 corpus/tools/make.py           # regenerate everything
    python3 corpus/tools/make.py --check   # regenerate, then verify EXPECT

--check re-derives, from the *source text* of each message (before charset and
transfer encoding), the set of keywords a correct filter must find after undoing
the evasion tricks, and compares it with what EXPECT says.  See check() below.
"""

import base64
import hashlib
import html as htmllib
import os
import quopri
import re
import sys
import unicodedata

CORPUS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# --------------------------------------------------------------------------
# keyword vocabulary the EXPECT file is complete with respect to
# --------------------------------------------------------------------------

KW_FREE = "免费 优惠 特惠 特价 便宜 廉价".split()
KW_ADULT = "色情 情色 激情 伟哥 性福 裸体 美女".split()
KW_MONEY = "赚钱 发财 致富 股票 代开 代理 热销 法宝 宝典 直投".split()
KW_EN = "free viagra sex cheap casino".split()
# common words that may be on the project's lists too; spam messages avoid them
# entirely so that EXPECT stays complete whatever the lists say about them.
KW_COMMON = "男人 女人 电影 成功 基金".split()
KW_ZH = KW_FREE + KW_ADULT + KW_MONEY

# --------------------------------------------------------------------------
# encoding helpers
# --------------------------------------------------------------------------


def stream(seed, n):
    """n deterministic pseudo-random bytes."""
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(f"{seed}:{i}".encode()).digest()
        i += 1
    return bytes(out[:n])


def b64(data, width=76, pad=True):
    s = base64.b64encode(data).decode("ascii")
    if not pad:
        s = s.rstrip("=")
    return ("\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n").encode("ascii")


def qp(data):
    return quopri.encodestring(data)


def _chunks(text, charset, fits):
    """Split text on character boundaries into chunks whose encoding fits."""
    chunks, cur = [], ""
    for ch in text:
        if cur and not fits((cur + ch).encode(charset)):
            chunks.append(cur)
            cur = ch
        else:
            cur += ch
    if cur:
        chunks.append(cur)
    return chunks


def ew_b(text, charset):
    """RFC 2047 B encoded-words (<= 75 chars each), folded."""
    lab = len(f"=?{charset}?B??=")
    words = [f"=?{charset}?B?{base64.b64encode(c.encode(charset)).decode()}?="
             for c in _chunks(text, charset, lambda b: lab + 4 * ((len(b) + 2) // 3) <= 75)]
    return "\n ".join(words)


def _q(b):
    return "".join(chr(c) if (c < 128 and chr(c).isalnum()) else "_" if c == 32 else "=%02X" % c for c in b)


def ew_q(text, charset):
    """RFC 2047 Q encoded-words (<= 75 chars each), folded."""
    lab = len(f"=?{charset}?Q??=")
    words = [f"=?{charset}?Q?{_q(c.encode(charset))}?="
             for c in _chunks(text, charset, lambda b: lab + len(_q(b)) <= 75)]
    return "\n ".join(words)


def ent(s):
    return "".join(f"&#{ord(c)};" for c in s)


def hexent(s):
    return "".join(f"&#x{ord(c):X};" for c in s)


def B(*parts):
    """Concatenate str (ASCII only) and bytes pieces."""
    out = b""
    for p in parts:
        out += p.encode("ascii") if isinstance(p, str) else p
    return out


def headers(*lines):
    return B("\n".join(lines) + "\n")


def crlf(data):
    assert b"\r" not in data
    return data.replace(b"\n", b"\r\n")


def recv(helo, ip, rcpt, date, qid):
    return (f"Received: from {helo} ([{ip}])\n"
            f"\tby mx1.example.edu.cn (Postfix) with ESMTP id {qid}\n"
            f"\tfor <{rcpt}>; {date}")


# --------------------------------------------------------------------------
# message registry
# --------------------------------------------------------------------------

MESSAGES = []


class Msg:
    def __init__(self, path, label, what, data, texts, expect=None, covers=(), in_expect=True):
        self.path = path            # relative to corpus/
        self.label = label          # "spam" / "ham"
        self.what = what            # one line for README
        self.data = data            # exact bytes
        self.texts = texts          # [(kind, str)] kind: subject/plain/html; source text for check()
        self.expect = expect        # spam: [kw]; ham: ["!kw"]; None: no EXPECT line
        self.covers = list(covers)  # ham: look-alike strings that contain a negated keyword
        self.in_expect = in_expect


def add(*a, **k):
    m = Msg(*a, **k)
    assert m.label in ("spam", "ham")
    assert not any(x.path == m.path for x in MESSAGES), m.path
    MESSAGES.append(m)


# ==========================================================================
# Chinese spam
# ==========================================================================

def spam_zh():
    # 1 -------------------------------------------------------------------
    subj = "代开各地正规发票，点数优惠"
    body = """尊敬的公司负责人、财务经理：

　　您好！本公司因进项较多，现可对外代开部分普通发票及增值税专用发票，
点数优惠，可先验票后付款。

　　代开范围：商品销售、广告、运输、建筑安装、餐饮、会议、服务、租赁等。
　　税点面议，长期合作价格更便宜！

　　联系人：刘先生
　　电话：0755-8000 0000　手机：139 0000 0000

此信息长期有效，如有打扰，敬请谅解！
"""
    data = headers(
        recv("pc-20241105xq", "198.51.100.23", "zhang@example.edu.cn", "Tue, 5 Nov 2024 10:02:11 +0800 (CST)", "4XkP1n0Jz1"),
        "Message-ID: <20241105100209.3F2A@sz-fp.example.com>",
        'From: "' + ew_b("刘先生", "gb2312") + '" <fp8821@sz-fp.example.com>',
        "To: zhang@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Tue, 5 Nov 2024 10:02:09 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain;\n\tcharset="gb2312"',
        "Content-Transfer-Encoding: base64",
        "X-Mailer: Microsoft Outlook Express 6.00.2900.2180",
    ) + b"\n" + b64(body.encode("gb2312"))
    assert "刘先生" in body
    add("spam/zh-invoice-gb2312-base64.eml", "spam",
        "代开发票 invoice spam; GB2312 body in base64 wrapped at 76; `=?gb2312?B?` subject and From name",
        data, [("subject", subj), ("plain", body)], ["代开", "优惠", "便宜"])

    # 2 -------------------------------------------------------------------
    subj = "美国原装伟哥，特价热销中"
    text = """美国原装进口伟哥，特价热销中！

纯天然草本配方，服用二十分钟即可起效，让您和伴侣重享性福！正品保证，绝非廉价仿品。
今日下单买二送一，全国货到付款，包装隐秘，充分保护您的隐私。

订购热线：400-000-0000
网上商城：http://weige.example.com/
"""
    hbody = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=gbk"></head>
<body>
<p><font color="#ff0000" size="5">美国原装进口伟哥，特价热销中！</font></p>
<p>纯天然草本配方，服用二十分钟即可起效，让您和伴侣重享性福！正品保证，绝非廉价仿品。</p>
<p>今日下单买二送一，全国货到付款，包装隐秘，充分保护您的隐私。</p>
<p>订购热线：<b>400-000-0000</b><br>网上商城：<a href="http://weige.example.com/">weige.example.com</a></p>
</body></html>
"""
    bnd = "----=_NextPart_000_0013_01DB2F11.5C7A9E40"
    data = headers(
        recv("user-pc", "203.0.113.77", "li@example.edu.cn", "Wed, 6 Nov 2024 21:40:55 +0800 (CST)", "8Lq2mW0Ab3"),
        "Message-ID: <000f01db2f11$5c7a9e40$4d7100cb@userpc>",
        'From: "health" <kf@weige.example.com>',
        "To: <li@example.edu.cn>",
        "Subject: " + ew_q(subj, "GBK"),
        "Date: Wed, 6 Nov 2024 21:40:52 +0800",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative;\n\tboundary="{bnd}"',
        "X-Priority: 3",
    ) + B(
        "\nThis is a multi-part message in MIME format.\n\n",
        f"--{bnd}\n",
        'Content-Type: text/plain;\n\tcharset="gbk"\nContent-Transfer-Encoding: quoted-printable\n\n',
        qp(text.encode("gbk")),
        f"\n--{bnd}\n",
        'Content-Type: text/html;\n\tcharset="gbk"\nContent-Transfer-Encoding: quoted-printable\n\n',
        qp(hbody.encode("gbk")),
        f"\n--{bnd}--\n",
    )
    add("spam/zh-weige-gbk-qp-alternative.eml", "spam",
        "伟哥 pills; multipart/alternative, GBK quoted-printable text and HTML (soft breaks inside characters); `=?GBK?Q?` subject",
        data, [("subject", subj), ("plain", text), ("html", hbody)], ["伟哥", "特价", "热销", "性福", "廉价"])

    # 3 -------------------------------------------------------------------
    subj = "内幕消息：下周必涨的黑马股票"
    body = """各位股民朋友：

本工作室掌握主力资金内部动向，每周免费推荐一只黑马股票，准确率高达九成！
上月推荐的三只个股平均涨幅超过百分之六十，会员早已赚钱出局。

想快速致富吗？加入VIP会员，即送炒股法宝——《涨停宝典》电子版一本。
名额有限，先到先得！

QQ：10000000　微信：gupiao-vip
"""
    data = headers(
        recv("vps-3321.example.net", "192.0.2.45", "wang@example.edu.cn", "Thu, 7 Nov 2024 08:13:40 +0800 (CST)", "2Tq9xV1Pa7"),
        "Message-ID: <6f1c2a90b1e34d7c@vps-3321.example.net>",
        "From: " + ew_b("股市通", "utf-8") + " <vip@gupiao.example.net>",
        "To: wang@example.edu.cn",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Thu, 7 Nov 2024 08:13:38 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("utf-8")
    add("spam/zh-stock-tips-utf8-8bit.eml", "spam",
        "stock-tip spam (股票 赚钱 致富 法宝 宝典); UTF-8 8bit body; `=?utf-8?B?` subject",
        data, [("subject", subj), ("plain", body)], ["免费", "股票", "赚钱", "致富", "法宝", "宝典"])

    # 4 -------------------------------------------------------------------
    subj = "品牌服装特价清仓，一律廉价处理"
    body = """厂家直销：品牌女装、男装、童装清仓甩卖，每件都便宜得让您不敢相信！
全场一折起，特惠活动仅限本周六、周日两天。

地址：广州市白云区三元里服装批发城三楼 3018 档
批发零售均可，欢迎来电咨询：020-0000 0000
"""
    data = headers(
        recv("localhost", "198.51.100.200", "chen@example.edu.cn", "Fri, 8 Nov 2024 15:20:03 +0800", "5Rr7cN2Hd8"),
        "Message-ID: <20241108152001.18844.qmail@fz-pf.example.com>",
        "From: sale@fz-pf.example.com",
        "To: chen@example.edu.cn",
    ) + b"Subject: " + subj.encode("gbk") + b"\n" + headers(
        "Date: Fri, 8 Nov 2024 15:20:01 +0800",
    ) + b"\n" + body.encode("gbk")
    add("spam/zh-cheap-nocharset-raw-subject.eml", "spam",
        "cheap-price ad; no MIME headers at all, GBK bytes with no declared charset; raw 8-bit GBK Subject holding 特价 廉价 (only there)",
        data, [("subject", subj), ("plain", body)], ["特价", "廉价", "便宜", "特惠"])

    # 5 -------------------------------------------------------------------
    subj = "（12月14-15日 上海）中层经理管理技能提升训练营"
    body = """　　　　　　　中层经理管理技能提升训练营

【课程背景】
　　企业的执行力在于中层。本课程汇集讲师二十年企业管理实践，
为管理者提供一套拿来就能用的实战宝典。

【课程大纲】
　　一、中层经理的角色认知与定位
　　二、高效沟通与下属激励
　　三、团队建设与执行力提升
　　四、时间管理与工作授权

【费　　用】2800元/人（含资料、午餐、茶点），三人以上同时报名享受九折优惠。
【报名电话】021-0000 0000　传真：021-0000 0001

如不需要此类信息，请回复“退订”，我们将不再发送。
"""
    data = headers(
        recv("hp-8c1e7", "203.0.113.9", "zhao@example.edu.cn", "Mon, 11 Nov 2024 09:58:17 +0800 (CST)", "7Ww3eR5Kk2"),
        "Message-ID: <200411110958.peixun@pxzx.example.com>",
        'From: "' + ew_b("培训中心", "gb2312") + '" <px@pxzx.example.com>',
        "To: zhao@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Mon, 11 Nov 2024 09:58:15 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="gb2312"',
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + body.encode("gb2312")
    add("spam/zh-training-fake-base64.eml", "spam",
        "training-course ad (宝典 优惠); says `Content-Transfer-Encoding: base64` but the body is plain GB2312 text (trec06c quirk)",
        data, [("subject", subj), ("plain", body)], ["宝典", "优惠"])

    # 6 -------------------------------------------------------------------
    subj = "祝您发财！免费领取新年红包"
    sb = subj.encode("gb2312")
    cut = len("祝您".encode("gb2312")) + 1          # in the middle of 发
    w1 = "=?gb2312?B?" + base64.b64encode(sb[:cut]).decode() + "?="
    w2 = "=?gb2312?B?" + base64.b64encode(sb[cut:]).decode() + "?="
    body = """尊敬的用户：

新春佳节将至，本平台为老用户准备了新年红包，登录即可领取，最高八百八十八元。

活动网址：http://hongbao.example.net/
活动时间：即日起至正月十五

祝您新年快乐，万事如意！
"""
    data = headers(
        recv("mail.hongbao.example.net", "192.0.2.150", "sun@example.edu.cn", "Sat, 25 Jan 2025 19:30:44 +0800", "3Mm8aQ6Zp4"),
        "Message-ID: <hb.20250125193042.77@hongbao.example.net>",
        "From: hongbao@hongbao.example.net",
        "To: sun@example.edu.cn",
        f"Subject: {w1}\n {w2}",
        "Date: Sat, 25 Jan 2025 19:30:42 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("gb2312"))
    add("spam/zh-subject-split-encoded-word.eml", "spam",
        "red-packet scam; subject split into two `=?gb2312?B?` words cutting 发 in half (keywords 发财 免费 only in the subject)",
        data, [("subject", subj), ("plain", body)], ["发财", "免费"])

    # 7 -------------------------------------------------------------------
    subj = "免費看美女直播"
    body = """全台最大成人影音網站，數千部高畫質影片免費看！
每日更新：清純美女、火辣激情、裸體寫真、情色短片，應有盡有。

現在加入會員享受優惠，首月只要九十九元。
同時招募網站代理，每推廣一位會員即可分紅，輕鬆發財！

網址：http://av.example.tw/
"""
    data = headers(
        recv("dyn-61-22.example.tw", "203.0.113.61", "lin@example.edu.cn", "Sun, 10 Nov 2024 02:11:09 +0800", "6Jj4bT8Ce1"),
        "Message-ID: <1731175869.4471@dyn-61-22.example.tw>",
        "From: " + ew_b("客服", "big5") + " <service@av.example.tw>",
        "To: lin@example.edu.cn",
        "Subject: " + ew_b(subj, "big5"),
        "Date: Sun, 10 Nov 2024 02:11:07 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="big5"',
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("big5")
    add("spam/zh-adult-big5.eml", "spam",
        "adult + money spam in traditional characters (免費 美女 裸體 優惠 發財); Big5 8bit; `=?big5?B?` subject",
        data, [("subject", subj), ("plain", body)], ["免费", "美女", "激情", "裸体", "情色", "优惠", "代理", "发财"])

    # 8 -------------------------------------------------------------------
    subj = "🔥爆款热销🔥"
    body = """🔥🔥 年度爆款，热销百万件 🔥🔥

招募全国代理，零库存、零风险，一部手机在家就能赚钱！
𠮷祥物限量赠送，前一百名代理另有额外奖励。

咨询微信：baokuan888
"""
    data = headers(
        recv("smtp.baokuan.example.com", "198.51.100.88", "qian@example.edu.cn", "Tue, 12 Nov 2024 11:45:30 +0800", "9Pp1dS3Fg6"),
        "Message-ID: <bk-1731383128-0192@baokuan.example.com>",
        "From: baokuan <noreply@baokuan.example.com>",
        "To: qian@example.edu.cn",
        "Subject: " + ew_b(subj, "gb18030"),
        "Date: Tue, 12 Nov 2024 11:45:28 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="GB18030"',
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("gb18030"))
    assert len("🔥".encode("gb18030")) == 4 and len("𠮷".encode("gb18030")) == 4
    add("spam/zh-gb18030-4byte.eml", "spam",
        "agent-recruiting spam (热销 代理 赚钱); GB18030 base64 with 4-byte characters (🔥 U+1F525, 𠮷 U+20BB7), also in the subject",
        data, [("subject", subj), ("plain", body)], ["热销", "代理", "赚钱"])

    # 9 -------------------------------------------------------------------
    subj = "农村致富好项目：特种养殖"
    body = """各位朋友：

投资少、见效快、风险低的农村致富好项目——特种蛋鸡养殖！
本场由高级畜牧师张镕、王堃亲自指导，提供种苗、技术、饲料、回收一条龙服务。
三个月即可回本，现诚招各县市代理。

养殖场地址：山东省临沂市（来电告知详细地址）
咨询电话：0539-000 0000
"""
    try:
        body.encode("gb2312")
        raise AssertionError("needs GBK-only characters")
    except UnicodeEncodeError:
        pass
    data = headers(
        recv("ly-farm", "192.0.2.99", "zhou@example.edu.cn", "Wed, 13 Nov 2024 14:03:51 +0800", "1Hh6gU7Lm9"),
        "Message-ID: <20241113140349.0031@yz.example.com>",
        "From: yangzhi@yz.example.com",
        "To: zhou@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Wed, 13 Nov 2024 14:03:49 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("gbk")
    add("spam/zh-gb2312-label-gbk-chars.eml", "spam",
        "get-rich farming ad (致富 代理); labelled gb2312 but holds GBK-only characters 镕 堃 (must decode as GBK)",
        data, [("subject", subj), ("plain", body)], ["致富", "代理"])

    # 10 ------------------------------------------------------------------
    subj = "在家兼职，日结工资"
    body = """网络兼职招聘：每天只需两小时，在家用手机就能轻松赚钱！

无需押金，免费培训，当天结算工资，学生、宝妈、上班族均可。
工作内容：商品点赞、评论、收藏，简单易上手。
月入过万不是梦，立即添加客服微信：jianzhi2024
"""
    data = headers(
        recv("jz-mail", "203.0.113.140", "wu@example.edu.cn", "Thu, 14 Nov 2024 20:17:02 +0800", "4Gg2hI9Nn5"),
        "Message-ID: <jz.1731586620@jz.example.com>",
        "From: hr@jz.example.com",
        "To: wu@example.edu.cn",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Thu, 14 Nov 2024 20:17:00 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="gb2312"',
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("utf-8")
    add("spam/zh-utf8-labelled-gb2312.eml", "spam",
        "part-time-job scam (赚钱 免费); body labelled gb2312 but really UTF-8 (decodes as valid-looking GBK mojibake if trusted)",
        data, [("subject", subj), ("plain", body)], ["赚钱", "免费"])

    # 11 ------------------------------------------------------------------
    subj = "致富好项目，助您发财"
    body = """您还在为找不到好项目而发愁吗？

本公司诚招加盟商，投资一万元，一年回报二十万！
总部提供全套致富方案，手把手教您开店，保证半年回本，让您早日发财。

加盟热线：400-000-0001
"""
    data = headers(
        recv("jm.example.com", "198.51.100.31", "zheng@example.edu.cn", "Fri, 15 Nov 2024 09:00:12 +0800", "5Ff3jK1Qq7"),
        "Message-ID: <jm2024111509@jm.example.com>",
        "From: jiameng@jm.example.com",
        "To: zheng@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Fri, 15 Nov 2024 09:00:10 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="eucGB2312_cn"',
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("gb2312"))
    add("spam/zh-unknown-charset-label.eml", "spam",
        'franchise spam (发财 致富); unknown charset label `charset="eucGB2312_cn"` on GB2312 base64',
        data, [("subject", subj), ("plain", body)], ["发财", "致富"])

    # 12 ------------------------------------------------------------------
    hbody = """<html>
<head><title>财务服务</title></head>
<body>
<p>本公司长期<b>代<span>开</span></b>各类发<!-- x -->票，点数<font color="red">优<i></i>惠</font>，可先验票后付款。</p>
<p>另提供<strong>免<b></b>费</strong>税务咨询，<span>直</span><span>投</span>广告业务欢迎洽谈。</p>
<p>本月特<em></em>惠：满十万送一万。</p>
<p>联系电话：0755-8000 0001　刘先生</p>
</body>
</html>
"""
    data = headers(
        recv("fw-pc", "192.0.2.201", "he@example.edu.cn", "Sat, 16 Nov 2024 13:22:48 +0800", "6Dd4lM2Rr8"),
        "Message-ID: <20241116132246.88A1@cw.example.com>",
        "From: cw@cw.example.com",
        "To: he@example.edu.cn",
        "Subject: " + ew_b("财务服务", "gb2312"),
        "Date: Sat, 16 Nov 2024 13:22:46 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=gb2312",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(hbody.encode("gb2312"))
    add("spam/zh-html-split-tags.eml", "spam",
        "HTML-only invoice spam; keywords split by tags and comments: `代<span>开</span>`, `免<b></b>费`, `优<i></i>惠`, `发<!-- x -->票`, `<span>直</span><span>投</span>`, `特<em></em>惠`",
        data, [("subject", "财务服务"), ("html", hbody)], ["代开", "优惠", "免费", "直投", "特惠"])

    # 13 ------------------------------------------------------------------
    hbody = f"""<html><body>
<h2>{ent('免费')}注册，天天领现金</h2>
<p>每天签到即可领取现金红包，邀请好友还能轻松{hexent('赚钱')}，提现秒到账。</p>
<p>更有{ent('美女')}客服一对一在线指导，股{ent('票')}实时行情推送。</p>
<p>签到{ent('法宝')}：每天坚持，收益翻倍。</p>
<p><a href="http://qiandao.example.com/">立即注册</a>&nbsp;&nbsp;&copy; 2024</p>
</body></html>
"""
    data = headers(
        recv("qd.example.com", "203.0.113.33", "feng@example.edu.cn", "Sun, 17 Nov 2024 07:41:19 +0800", "7Ss5nO3Tt9"),
        "Message-ID: <qd-0017-1731800477@qiandao.example.com>",
        "From: qiandao@qiandao.example.com",
        "To: feng@example.edu.cn",
        "Subject: " + ew_b("天天领现金", "utf-8"),
        "Date: Sun, 17 Nov 2024 07:41:17 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n" + qp(hbody.encode("utf-8"))
    assert "&#20813;&#36153;" in hbody
    add("spam/zh-html-entities.eml", "spam",
        "HTML-only sign-up scam; keywords as numeric character references: `&#20813;&#36153;` (免费), hex `&#x8D5A;&#x94B1;` (赚钱), `股&#31080;`; UTF-8 quoted-printable",
        data, [("subject", "天天领现金"), ("html", hbody)], ["免费", "赚钱", "美女", "股票", "法宝"])

    # 14 ------------------------------------------------------------------
    hbody = """<html><body>
<p>激情视频聊天室，上千位美女陪你聊天，免费注册即送体验金！</p>
<span style="display:none">今天下午三点在二楼会议室开会，请各位带上季度报告。周末一起去爬山吧，天气预报说是晴天。</span>
<div style="font-size:0">图书馆借阅规则 课程表 期末考试安排 实验报告 读书笔记</div>
<p><a href="http://live.example.com/">点击进入</a></p>
</body></html>
"""
    data = headers(
        recv("live.example.com", "198.51.100.64", "yang@example.edu.cn", "Mon, 18 Nov 2024 23:05:36 +0800", "8Aa6pP4Uu1"),
        "Message-ID: <lv.1731942334.5@live.example.com>",
        "From: live@live.example.com",
        "To: yang@example.edu.cn",
        "Subject: " + ew_b("今晚有空吗", "gb2312"),
        "Date: Mon, 18 Nov 2024 23:05:34 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/html; charset="gb2312"',
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(hbody.encode("gb2312"))
    add("spam/zh-html-hidden-filler.eml", "spam",
        'HTML-only live-cam spam (激情 美女 免费) with innocent filler hidden in `<span style="display:none">` and `<div style="font-size:0">`',
        data, [("subject", "今晚有空吗"), ("html", hbody)], ["激情", "美女", "免费"])

    # 15 ------------------------------------------------------------------
    hbody = """<html><body>
<p>一部手机，在家轻松赚<span style="display:none">今天</span>钱，月入三万！</p>
<p>跟着导师操作，三个月就能发<font style="font-size:0">天气</font>财。</p>
<p>进口伟<span style="display: none;">周末</span>哥，药店同款，货到付款。</p>
</body></html>
"""
    data = headers(
        recv("mx.example.org", "192.0.2.17", "xu@example.edu.cn", "Tue, 19 Nov 2024 12:34:56 +0800", "9Bb7qQ5Vv2"),
        "Message-ID: <c0ffee.1731990894@mx.example.org>",
        "From: daoshi@example.org",
        "To: xu@example.edu.cn",
        "Subject: " + ew_b("在家就能做", "utf-8"),
        "Date: Tue, 19 Nov 2024 12:34:54 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(hbody.encode("utf-8"))
    add("spam/zh-html-hidden-inside-keyword.eml", "spam",
        "HTML-only spam with invisible junk inserted inside keywords: `赚<span style=\"display:none\">今天</span>钱`, `发<font style=\"font-size:0\">天气</font>财`, `伟<span style=\"display: none;\">周末</span>哥`",
        data, [("subject", "在家就能做"), ("html", hbody)], ["赚钱", "发财", "伟哥"])

    # 16 ------------------------------------------------------------------
    body = """免 费 领取价值三千元的理财课程，手把手教你买股票、赚-钱！

代　开 各类发票，免-费 验票，点数低。
免.费 送货上门，免*费 安装调试。

特 价 清 仓，机会难得，先到先得。
"""
    data = headers(
        recv("bj-office", "203.0.113.180", "ma@example.edu.cn", "Wed, 20 Nov 2024 16:48:09 +0800", "2Cc8rR6Ww3"),
        "Message-ID: <20241120164807.7@bj.example.com>",
        "From: bj@bj.example.com",
        "To: ma@example.edu.cn",
        "Subject: " + ew_b("好消息", "utf-8"),
        "Date: Wed, 20 Nov 2024 16:48:07 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("utf-8")
    assert "代\u3000开" in body
    add("spam/zh-evasion-spaces.eml", "spam",
        "separators inside keywords: `免 费`, `免-费`, `免.费`, `免*费`, `赚-钱`, `代　开` (U+3000 ideographic space), `特 价 清 仓`; UTF-8 8bit",
        data, [("subject", "好消息"), ("plain", body)], ["免费", "股票", "赚钱", "代开", "特价"])

    # 17 ------------------------------------------------------------------
    body = ("正品伟\u200b哥，药店同款，网购更便\u200c宜。\n\n"
            "与其自己买股\ufeff票，不如跟我们一起做代\u200d理，轻松赚\u200c钱。\n\n"
            "另售裸\u200b体写真集。\n\n咨询微信：zw-2024\n")
    data = headers(
        recv("zw.example.net", "198.51.100.5", "luo@example.edu.cn", "Thu, 21 Nov 2024 10:10:10 +0800", "3Ee9sS7Xx4"),
        "Message-ID: <zw.20241121101008@zw.example.net>",
        "From: zw@zw.example.net",
        "To: luo@example.edu.cn",
        "Subject: " + ew_b("正品保证", "utf-8"),
        "Date: Thu, 21 Nov 2024 10:10:08 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("utf-8"))
    add("spam/zh-evasion-zero-width.eml", "spam",
        "zero-width characters inside keywords: U+200B in 伟哥 and 裸体, U+200C in 便宜 and 赚钱, U+FEFF in 股票, U+200D in 代理; UTF-8 base64",
        data, [("subject", "正品保证"), ("plain", body)], ["伟哥", "便宜", "股票", "代理", "赚钱", "裸体"])

    # 18 ------------------------------------------------------------------
    subj = "【限時優惠】全場免費送貨"
    body = """【限時優惠】全場商品免費送貨到府！

投資虛擬貨幣，三個月穩定發財，每月輕鬆賺錢五萬元。
現在登記，更送獨家投資寶典一本。

查詢熱線：+852 0000 0000
"""
    data = headers(
        recv("hk-relay.example.com", "192.0.2.88", "tang@example.edu.cn", "Fri, 22 Nov 2024 18:27:33 +0800", "4Ii1tT8Yy5"),
        "Message-ID: <hk.1732271251.93@hk-relay.example.com>",
        "From: offer@hk-relay.example.com",
        "To: tang@example.edu.cn",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Fri, 22 Nov 2024 18:27:31 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("utf-8")
    add("spam/zh-evasion-traditional-utf8.eml", "spam",
        "traditional characters in UTF-8 (優惠 免費 發財 賺錢 寶典) that must be folded to simplified",
        data, [("subject", subj), ("plain", body)], ["优惠", "免费", "发财", "赚钱", "宝典"])

    # 19 ------------------------------------------------------------------
    bnd = "----=_Part_7731_0001"
    p1 = "您好，本期资料见下，请查收。\n"
    p2 = "本期六合彩特码内部资料，期期命中！\n免费提供给老会员，跟着我们一起发财！\n联系QQ：20000000\n"
    data = headers(
        recv("lh-pc", "203.0.113.222", "song@example.edu.cn", "Sat, 23 Nov 2024 21:00:05 +0800", "5Jj2uU9Zz6"),
        "Message-ID: <lh.20241123210003@lh.example.com>",
        "From: lh@lh.example.com",
        "To: song@example.edu.cn",
        "Subject: " + ew_b("本期资料", "gb2312"),
        "Date: Sat, 23 Nov 2024 21:00:03 +0800",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{bnd}"',
    ) + B(
        "\nThis is a multi-part message in MIME format.\n\n",
        f"--{bnd}\n",
        "Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\n",
        p1.encode("gbk"),
        f"\n--{bnd}\n",
        'Content-Type: text/plain; charset="gb2312"\nContent-Transfer-Encoding: base64\n\n',
        b64(p2.encode("gb2312")),
    )
    add("spam/zh-multipart-unclosed.eml", "spam",
        "lottery-tip spam; multipart/mixed with no closing boundary (keywords in the last, unterminated part); first part has no charset (GBK bytes)",
        data, [("plain", p1), ("plain", p2)], ["免费", "发财"])

    # 20 ------------------------------------------------------------------
    inner = "机票特价：全国各大航线低至一折，比旅行社便宜一半！\n订票热线：400-000-0002（24小时）\n"
    nb = "----=_NextPart_000_0001_01DA3C55.0A1B2C30"
    data = headers(
        recv("jp-sender", "198.51.100.177", "han@example.edu.cn", "Sun, 24 Nov 2024 08:08:08 +0800", "6Kk3vV1Aa7"),
        "Message-ID: <jp.0001.20241124@jp.example.com>",
        "From: jipiao@jp.example.com",
        "To: han@example.edu.cn",
        "Subject: " + ew_b("机票特价", "gb2312"),
        "Date: Sun, 24 Nov 2024 08:08:06 +0800",
        "MIME-Version: 1.0",
        "Content-Type: multipart/mixed",
    ) + B(
        "\nThis is a multi-part message in MIME format.\n\n",
        f"--{nb}\n",
        'Content-Type: text/plain;\n\tcharset="gb2312"\nContent-Transfer-Encoding: 8bit\n\n',
        inner.encode("gb2312"),
        f"\n--{nb}--\n",
    )
    add("spam/zh-multipart-no-boundary.eml", "spam",
        "cheap air tickets (特价 便宜); `Content-Type: multipart/mixed` with no boundary parameter; body must still be read as (GB2312) text",
        data, [("subject", "特价机票"), ("plain", inner)], ["特价", "便宜"])

    # 21 ------------------------------------------------------------------
    depth = 40
    inner = "美女激情视频，免费观看。\n"
    parts = []
    for lvl in range(1, depth):
        parts.append(f"--nest{lvl:02d}\nContent-Type: multipart/mixed; boundary=\"nest{lvl + 1:02d}\"\n\n")
    tail = []
    for lvl in range(depth, 0, -1):
        tail.append(f"\n--nest{lvl:02d}--\n")
    data = headers(
        recv("nest.example.org", "192.0.2.240", "deng@example.edu.cn", "Mon, 25 Nov 2024 03:03:03 +0800", "7Ll4wW2Bb8"),
        "Message-ID: <nest40@nest.example.org>",
        "From: x@nest.example.org",
        "To: deng@example.edu.cn",
        "Subject: re: hi",
        "Date: Mon, 25 Nov 2024 03:03:01 +0800",
        "MIME-Version: 1.0",
        'Content-Type: multipart/mixed; boundary="nest01"',
    ) + B(
        "\n",
        "".join(parts),
        f"--nest{depth:02d}\n",
        "Content-Type: text/plain; charset=gb2312\nContent-Transfer-Encoding: base64\n\n",
        b64(inner.encode("gb2312")),
        "".join(tail),
    )
    assert data.count(b"Content-Type: multipart/mixed") == depth
    add("spam/zh-deep-nesting-40.eml", "spam",
        "40 levels of nested multipart/mixed; the only text (美女 激情 免费, GB2312 base64) is at the bottom. Robustness test; not in EXPECT (a filter may cap depth)",
        data, [("plain", inner)], ["美女", "激情", "免费"], in_expect=False)

    # 22 ------------------------------------------------------------------
    head = "免费领取彩票，中奖后轻松赚钱！详情见下。\n\n"
    junk = stream("huge-line", 110_000).hex()                     # 220,000 hex digits
    line = " ".join(junk[i:i + 8] for i in range(0, len(junk), 8))  # one line, ~247 KB
    body = head + line + "\n\n退订请回复 TD\n"
    assert len(line) >= 200_000 and "\n" not in line
    data = headers(
        recv("cp.example.net", "203.0.113.99", "cao@example.edu.cn", "Tue, 26 Nov 2024 12:00:00 +0800", "8Mm5xX3Cc9"),
        "Message-ID: <cp.huge.20241126@cp.example.net>",
        "From: cp@cp.example.net",
        "To: cao@example.edu.cn",
        "Subject: " + ew_b("中奖通知", "utf-8"),
        "Date: Tue, 26 Nov 2024 11:59:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("utf-8")
    add("spam/zh-huge-line.eml", "spam",
        "lottery spam (免费 赚钱 in the first line) followed by one ~247 KB line of hex junk with no newline",
        data, [("plain", body)], ["免费", "赚钱"])

    # 23 ------------------------------------------------------------------
    subj = "情色小说，每日更新"
    body = """本站提供情色小说连载与激情图片，每日更新。
本站含有色情内容，仅限年满十八周岁的成年人浏览。
网址：http://xs.example.net/
"""
    data = crlf(headers(
        recv("xs.example.net", "198.51.100.42", "peng@example.edu.cn", "Wed, 27 Nov 2024 01:15:27 +0800", "9Nn6yY4Dd1"),
        "Message-ID: <xs.1733015725@xs.example.net>",
        "From: xs@xs.example.net",
        "To: peng@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Wed, 27 Nov 2024 01:15:25 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("gb2312")))
    add("spam/zh-adult-gb2312-crlf.eml", "spam",
        "adult spam (情色 激情 色情); CRLF line endings throughout, GB2312 base64",
        data, [("subject", subj), ("plain", body)], ["情色", "激情", "色情"])

    # 24 ------------------------------------------------------------------
    body = "爆款热销，诚招全国代理！\n一件代发，无需囤货，新手也能轻松上手。\n微信：baokuan99\n"
    raw = body.encode("gbk")
    assert len(raw) % 3 != 0
    enc = b64(raw, pad=False)
    assert b"=" not in enc
    data = headers(
        recv("bk2.example.com", "192.0.2.123", "lu@example.edu.cn", "Thu, 28 Nov 2024 09:30:00 +0800", "1Oo7zZ5Ee2"),
        "Message-ID: <bk2.20241128093000@bk2.example.com>",
        "From: bk2@bk2.example.com",
        "To: lu@example.edu.cn",
        "Subject: " + ew_b("诚招代理", "gb2312"),
        "Date: Thu, 28 Nov 2024 09:29:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gbk",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + enc
    add("spam/zh-base64-no-padding.eml", "spam",
        "agent recruiting (热销 代理); GBK base64 with the trailing `=` padding stripped",
        data, [("subject", "诚招代理"), ("plain", body)], ["热销", "代理"])

    # 25 ------------------------------------------------------------------
    hbody = """<html><body>
<p><img src="cid:logo001@dm"></p>
<p>本公司承接DM杂志直投、短信群发业务，价格全市最便宜！</p>
<p>新客户首单享受八折优惠，欢迎来电洽谈。</p>
<p>电话：0571-0000 0000</p>
</body></html>
"""
    gif = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
    bnd = "----=_NextPart_000_0007_01DB4166.A2C3E450"
    data = headers(
        recv("dm-pc", "203.0.113.57", "jiang@example.edu.cn", "Fri, 29 Nov 2024 15:15:15 +0800", "2Pp8aA6Ff3"),
        "Message-ID: <000701db4166$a2c3e450$3971cb00@dmpc>",
        "From: dm@dm.example.com",
        "To: jiang@example.edu.cn",
        "Subject: " + ew_b("DM杂志广告业务", "gb2312"),
        "Date: Fri, 29 Nov 2024 15:15:13 +0800",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/related;\n\ttype="text/html";\n\tboundary="{bnd}"',
    ) + B(
        "\n",
        f"--{bnd}\n",
        'Content-Type: text/html;\n\tcharset="gb2312"\nContent-Transfer-Encoding: base64\n\n',
        b64(hbody.encode("gb2312")),
        f"\n--{bnd}\n",
        'Content-Type: image/gif;\n\tname="logo.gif"\nContent-Transfer-Encoding: base64\nContent-ID: <logo001@dm>\n\n',
        b64(gif),
        f"\n--{bnd}--\n",
    )
    add("spam/zh-html-related-image.eml", "spam",
        "advertising-service spam (直投 便宜 优惠); multipart/related: GB2312 base64 HTML + inline GIF",
        data, [("subject", "DM杂志广告业务"), ("html", hbody)], ["直投", "便宜", "优惠"])

    # 26 ------------------------------------------------------------------
    subj = "净水器热销，诚招各地代理"
    body = """本公司生产的家用净水器热销全国二十多个省市，
现诚招各地代理，加盟政策非常优惠，区域保护。

咨询热线：400-000-0003
"""
    data = headers(
        recv("js-pc", "198.51.100.250", "yu@example.edu.cn", "Sat, 30 Nov 2024 10:45:00 +0800", "3Qq9bB7Gg4"),
        "From: js@js.example.com",
        "To: yu@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Sat, 30 Nov 2024 10:44:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: 8bit",
        "X-Mailer Foxmail 6.15.201 [cn]",
        "Message-ID: <js.20241130104458@js.example.com>",
    ) + b"\n" + body.encode("gb2312")
    add("spam/zh-header-no-colon.eml", "spam",
        "water-filter agent spam (热销 代理 优惠); a header line without a colon (`X-Mailer Foxmail 6.15.201 [cn]`) after Content-Type",
        data, [("subject", subj), ("plain", body)], ["热销", "代理", "优惠"])

    # 27 ------------------------------------------------------------------
    subj = "代開發票"
    body = """各位老闆您好：

本公司可代開各類統一發票，稅點低，收費便宜。
另有公司登記、記帳、報稅等服務，歡迎來電洽詢。

聯絡電話：02-0000-0000　陳小姐
"""
    data = headers(
        recv("tp-pc", "203.0.113.11", "xie@example.edu.cn", "Sun, 1 Dec 2024 11:11:11 +0800", "4Rr1cC8Hh5"),
        "Message-ID: <tp.20241201111109@tp.example.tw>",
        "From: tp@tp.example.tw",
        "To: xie@example.edu.cn",
        "Subject: " + ew_b(subj, "big5"),
        "Date: Sun, 1 Dec 2024 11:11:09 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=big5",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n" + qp(body.encode("big5"))
    add("spam/zh-invoice-big5-qp.eml", "spam",
        "traditional invoice spam (代開 便宜); Big5 quoted-printable; `=?big5?B?` subject",
        data, [("subject", subj), ("plain", body)], ["代开", "便宜"])


# ==========================================================================
# English spam
# ==========================================================================

def spam_en():
    subj = "VIAGRA from $0.99 - cheap meds, no prescription"
    body = """Dear customer,

Our online pharmacy offers genuine VIAGRA and Cialis at up to 80% below
retail prices. Cheap meds, no prescription needed, discreet packaging
and worldwide shipping.

Order now: http://rx-shop.example.com/

To stop receiving these messages reply with REMOVE in the subject.
"""
    data = headers(
        recv("adsl-77.example.net", "198.51.100.77", "smith@example.edu.cn", "Mon, 2 Dec 2024 04:12:44 +0800", "5Ss2dD9Ii6"),
        "Message-ID: <20241201201242.4411.rx@rx-shop.example.com>",
        'From: "Pharmacy Online" <orders@rx-shop.example.com>',
        "To: smith@example.edu.cn",
        "Subject: " + subj,
        "Date: Sun, 1 Dec 2024 20:12:42 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n" + B(body)
    add("spam/en-viagra-cheap-meds.eml", "spam",
        "pharmacy spam (VIAGRA upper case, cheap); US-ASCII 7bit",
        data, [("subject", subj), ("plain", body)], ["viagra", "cheap"])

    subj = "Your $500 welcome bonus is waiting"
    hbody = """<html><body bgcolor="#000000">
<p><font color="#ffcc00" size="6">Claim your <b>FREE</b> $500 welcome bonus at Golden Palace Casino!</font></p>
<p>Play slots, blackjack and roulette - 200 FrEe spins on your first deposit.</p>
<p><a href="http://golden-palace.example.com/join">JOIN NOW</a></p>
<p style="font-size:9px">You must be 18 or older. Unsubscribe: reply STOP.</p>
</body></html>
"""
    data = headers(
        recv("mta3.example.com", "192.0.2.3", "jones@example.edu.cn", "Tue, 3 Dec 2024 06:06:06 +0800", "6Tt3eE1Jj7"),
        "Message-ID: <gp.8812.1733177164@golden-palace.example.com>",
        "From: Golden Palace <vip@golden-palace.example.com>",
        "To: jones@example.edu.cn",
        "Subject: " + subj,
        "Date: Mon, 2 Dec 2024 22:06:04 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n" + B(hbody)
    add("spam/en-casino-html.eml", "spam",
        "casino spam (FREE, FrEe, Casino); HTML-only, 7bit",
        data, [("subject", subj), ("html", hbody)], ["free", "casino"])

    subj = "Make $5,000 a week from home"
    body = """Hello,

Are you tired of working 9 to 5 for someone else? Our proven system shows ordinary people how to make money online in less than two hours a day.
Thousands of members already earn $5,000 a week or more -- no experience needed, 100% free to join.
Café owners, students and retirees: everyone qualifies.

Visit http://earn.example.net/start and start earning today!

You received this email because you opted in at one of our partner sites.
"""
    data = headers(
        recv("earn.example.net", "203.0.113.205", "brown@example.edu.cn", "Wed, 4 Dec 2024 13:13:13 +0800", "7Uu4fF2Kk8"),
        "Message-ID: <earn-55219@earn.example.net>",
        "From: Success Team <team@earn.example.net>",
        "To: brown@example.edu.cn",
        "Subject: " + subj,
        "Date: Wed, 4 Dec 2024 05:13:11 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n" + qp(body.encode("iso-8859-1"))
    add("spam/en-money-making-qp.eml", "spam",
        "make-money-from-home spam (free); ISO-8859-1 quoted-printable with soft line breaks and `=E9`",
        data, [("subject", subj), ("plain", body)], ["free"])

    subj = "ＦＲＥＥ ｓｅｘ ｃｈａｔ tonight"
    body = """Meet lonely singles near you!

ＦＲＥＥ registration, ｆｒｅｅ ｓｅｘ chat, no credit card.
ＶＩＡＧＲＡ samples for new members.

http://chat.example.org/
"""
    data = headers(
        recv("chat.example.org", "198.51.100.9", "taylor@example.edu.cn", "Thu, 5 Dec 2024 00:30:00 +0800", "8Vv5gG3Ll9"),
        "Message-ID: <fw.1733329798@chat.example.org>",
        "From: Chat <hello@chat.example.org>",
        "To: taylor@example.edu.cn",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Wed, 4 Dec 2024 16:29:58 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("utf-8"))
    add("spam/en-fullwidth-utf8.eml", "spam",
        "full-width Latin (ＦＲＥＥ ｆｒｅｅ ｓｅｘ ＶＩＡＧＲＡ) in a UTF-8 base64 body and `=?utf-8?B?` subject",
        data, [("subject", subj), ("plain", body)], ["free", "sex", "viagra"])

    subj = "FrEe CaSiNo chips inside"
    body = """Get FrEe ViAgRa with every order!
cHeAp pills, a better SeX life, and a bonus at our online CaSiNo.

http://mix.example.com/
"""
    data = headers(
        recv("mix.example.com", "192.0.2.66", "wilson@example.edu.cn", "Fri, 6 Dec 2024 02:02:02 +0800", "9Ww6hH4Mm1"),
        "Message-ID: <mc.0606@mix.example.com>",
        "From: offers@mix.example.com",
        "To: wilson@example.edu.cn",
        "Subject: " + subj,
        "Date: Thu, 5 Dec 2024 18:02:00 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n" + B(body)
    add("spam/en-mixed-case.eml", "spam",
        "mixed-case Latin keywords (FrEe ViAgRa cHeAp SeX CaSiNo); 7bit",
        data, [("subject", subj), ("plain", body)], ["free", "viagra", "cheap", "sex", "casino"])

    subj = "special offer"
    body = ("Get vi\u200bagra online, fr\u200cee shipping, better s\ufeffex guaranteed.\n"
            "Join our ca\u200dsino tonight.\n\nhttp://zw.example.com/\n")
    data = headers(
        recv("zw2.example.com", "203.0.113.44", "davies@example.edu.cn", "Sat, 7 Dec 2024 07:07:07 +0800", "1Xx7iI5Nn2"),
        "Message-ID: <zw2.1733526425@zw2.example.com>",
        "From: deals@zw2.example.com",
        "To: davies@example.edu.cn",
        "Subject: " + subj,
        "Date: Fri, 6 Dec 2024 23:07:05 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n" + qp(body.encode("utf-8"))
    add("spam/en-zero-width-qp.eml", "spam",
        "zero-width characters inside Latin keywords (vi\\u200bagra, fr\\u200cee, s\\ufeffex, ca\\u200dsino); UTF-8 quoted-printable",
        data, [("subject", subj), ("plain", body)], ["viagra", "free", "sex", "casino"])

    subj = "Hot singles want to meet you"
    text = """Thousands of hot singles in your area are looking for casual sex tonight.
Sign up free - it takes 30 seconds.

http://date.example.com/
"""
    hbody = """<html><body>
<h1>Thousands of hot singles in your area are looking for casual <i>sex</i> tonight.</h1>
<p><a href="http://date.example.com/">Sign up free</a> - it takes 30 seconds.</p>
</body></html>
"""
    bnd = "b1_5f0c3d2e1a9b8c7d6e5f"
    data = headers(
        recv("date.example.com", "198.51.100.19", "evans@example.edu.cn", "Sun, 8 Dec 2024 22:22:22 +0800", "2Yy8jJ6Oo3"),
        "Message-ID: <5f0c3d2e1a9b8c7d6e5f@date.example.com>",
        "From: Dating <noreply@date.example.com>",
        "To: evans@example.edu.cn",
        "Subject: " + subj,
        "Date: Sun, 8 Dec 2024 14:22:20 +0000",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{bnd}"',
    ) + B(
        "\n",
        f"--{bnd}\n",
        "Content-Type: text/plain; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n",
        text,
        f"\n--{bnd}\n",
        "Content-Type: text/html; charset=us-ascii\nContent-Transfer-Encoding: 7bit\n\n",
        hbody,
        f"\n--{bnd}--\n",
    )
    add("spam/en-dating-alternative.eml", "spam",
        "adult dating spam (sex, free); multipart/alternative text + HTML, 7bit",
        data, [("subject", subj), ("plain", text), ("html", hbody)], ["sex", "free"])


# ==========================================================================
# Chinese ham
# ==========================================================================

def ham_zh():
    # 1 -------------------------------------------------------------------
    subj = "关于申报晨光教育基金会奖学金的通知"
    body = """各学院、各位同学：

　　晨光教育基金会今年继续在我校设立奖学金，资助品学兼优、家庭经济困难的本科生。现将有关事项通知如下：

　　一、申请条件：遵纪守法，学习成绩优良，本学年无不及格课程。
　　二、名额与标准：全校共五十名，每人五千元。往年申请成功率约为三成，请同学们认真准备材料。
　　三、申请材料：申请表、成绩单、家庭经济情况说明各一份。本人不能到场的，可由代理人持本人签字的委托书提交。
　　四、截止时间：十一月三十日下午五点，逾期不予受理。

　　联系人：学生工作处陈老师，电话 010-0000 0000。

学生工作处
2024年11月1日
"""
    data = headers(
        "Received: from oa.example.edu.cn (oa.example.edu.cn [10.0.3.12])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 0A1B2C3D4E\n\tfor <students@example.edu.cn>; Fri, 1 Nov 2024 09:00:05 +0800 (CST)",
        "Message-ID: <20241101090003.55810@oa.example.edu.cn>",
        'From: "' + ew_b("学生工作处", "gb2312") + '" <xsc@example.edu.cn>',
        "To: students@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Fri, 1 Nov 2024 09:00:03 +0800",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="gb2312"',
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("gb2312"))
    add("ham/zh-university-notice-gb2312-base64.eml", "ham",
        "university scholarship notice with look-alikes 基金会 成功率 代理人 (none of 基金 成功 代理 is a word here); GB2312 base64",
        data, [("subject", subj), ("plain", body)], ["!基金", "!成功", "!代理"], covers=["基金会", "成功率", "代理人"])

    # 2 -------------------------------------------------------------------
    subj = "最近好吗"
    body = """小雨：

　　好久不见！上周末我和老公去新开的电影院看了场夜场，环境不错，座椅也舒服，就是爆米花贵了点。
　　那天散场后跟邻居聊起来，现在不管男人女人，上有老下有小，谁都不容易。
　　最近单位里事情多，几乎天天加班。你那边怎么样？孩子上幼儿园还适应吗？
　　下个月我可能去杭州出差，到时候约你出来喝茶。

　　祝好！
　　　　　　　　阿芳
"""
    data = headers(
        recv("smtp.example.com", "203.0.113.20", "xiaoyu@example.edu.cn", "Sun, 3 Nov 2024 20:41:10 +0800", "3Zz9kK7Pp4"),
        "Message-ID: <5A3B2C1D.7080904@example.com>",
        "From: afang@example.com",
        "To: xiaoyu@example.edu.cn",
    ) + b"Subject: " + subj.encode("gbk") + b"\n" + headers(
        "Date: Sun, 3 Nov 2024 20:41:08 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("gbk")
    add("ham/zh-friend-letter-nocharset.eml", "ham",
        "letter between friends: 电影院 (not 电影), 男人 女人 in normal use; GBK 8bit with no charset declared; raw GBK subject",
        data, [("subject", subj), ("plain", body)], ["!电影"], covers=["电影院"])

    # 3 -------------------------------------------------------------------
    subj = "王堃和李镕的婚礼邀请"
    body = """各位老同学：

　　好消息！王堃和李镕终于要结婚了。婚礼定在明年五月二日中午十二点，地点在南京金陵饭店二楼宴会厅。
　　他们俩是大三那年一起看电影时认识的，一晃已经八年了。
　　请大家尽量提前安排好时间，收到请回复，方便统计人数订酒席。

　　班长　周海
"""
    data = headers(
        recv("smtp.example.net", "198.51.100.120", "classmates@example.edu.cn", "Mon, 4 Nov 2024 12:30:21 +0800", "4Aa1lL8Qq5"),
        "Message-ID: <CAE1x9k=wedding.0504@example.net>",
        "From: zhouhai@example.net",
        "To: classmates@example.edu.cn",
        "Subject: " + ew_b(subj, "GBK"),
        "Date: Mon, 4 Nov 2024 12:30:19 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=GBK",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("gbk"))
    add("ham/zh-wedding-gbk-rare-chars.eml", "ham",
        "wedding invitation; GBK base64 with characters outside GB2312 (堃 镕), also in a `=?GBK?B?` subject; 电影 in normal use",
        data, [("subject", subj), ("plain", body)])

    # 4 -------------------------------------------------------------------
    subj = "项目周报（第45周）"
    body = """各位同事：

　　本周项目周报如下，请查阅：
　　1. 与华东客户的合同谈判已进入最后阶段，对方委派的代理人下周二来公司签约。
　　2. 新版本回归测试通过率已达百分之九十五，预计月底上线。
　　3. 下周一上午十点在三楼会议室开例会，请准时参加。

　　如有问题请随时联系我。

张堃
研发部
"""
    data = crlf(headers(
        "Received: from exch01.corp.example.com ([10.1.0.5])\n\tby mx1.example.com with ESMTP id 5Bb2mM9Rr6;\n\tFri, 8 Nov 2024 17:45:12 +0800",
        "Message-ID: <B3F1C2A0D9E84F7A@exch01.corp.example.com>",
        "From: " + ew_b("张堃", "gbk") + " <zhangkun@corp.example.com>",
        "To: rd-team@corp.example.com",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Fri, 8 Nov 2024 17:45:10 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("gbk"))
    add("ham/zh-weekly-report-crlf.eml", "ham",
        "work mail (weekly report) with 代理人 and 通过率; labelled gb2312 but signed with GBK-only 堃; CRLF line endings, 8bit",
        data, [("subject", subj), ("plain", body)], ["!代理"], covers=["代理人"])

    # 5 -------------------------------------------------------------------
    subj = "[pydata-cn] 用 pandas 处理股票日线数据时内存不够"
    body = """各位好，

我在用 pandas 读取股票日线数据（CSV 格式，约两千只股票、十年的数据）时遇到内存问题，
read_csv 之后 DataFrame 占用了将近 8GB。除了指定 dtype 和分块读取之外，还有什么好办法吗？

另外想请教一下：把基金净值数据和股票数据按交易日对齐时，节假日缺失的行大家一般怎么处理？
用 ffill 会不会引入偏差？

谢谢！
小林

_______________________________________________
pydata-cn 邮件列表
pydata-cn@lists.example.org
退订：https://lists.example.org/mailman/listinfo/pydata-cn
"""
    data = headers(
        "Received: from lists.example.org (lists.example.org [192.0.2.80])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 6Cc3nN1Ss7\n\tfor <gao@example.edu.cn>; Tue, 12 Nov 2024 22:10:31 +0800 (CST)",
        "Message-ID: <CAH7u2+pd.1731420627@mail.example.com>",
        "From: Xiao Lin <xiaolin@example.com>",
        "To: pydata-cn@lists.example.org",
        "Subject: " + ew_q(subj, "utf-8"),
        "Date: Tue, 12 Nov 2024 22:10:27 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "List-Id: <pydata-cn.lists.example.org>",
        "List-Unsubscribe: <https://lists.example.org/mailman/options/pydata-cn>,\n <mailto:pydata-cn-request@lists.example.org?subject=unsubscribe>",
        "Precedence: list",
        "Sender: pydata-cn-bounces@lists.example.org",
    ) + b"\n" + qp(body.encode("utf-8"))
    add("ham/zh-mailing-list-stock-qp.eml", "ham",
        "mailing-list post (pandas question) using 股票 and 基金 in normal context; UTF-8 quoted-printable; `=?utf-8?Q?` subject; List-* headers",
        data, [("subject", subj), ("plain", body)])

    # 6 -------------------------------------------------------------------
    subj = "东方银行信用卡电子对账单（2024年10月）"
    text = """尊敬的李明先生：

　　您好！您2024年10月的信用卡电子对账单已生成。
　　本期应还金额：人民币 3,256.80 元
　　最低还款额：人民币 325.68 元
　　到期还款日：2024年11月25日

　　您持有的基金产品本月净值变动情况，请登录手机银行“理财”栏目查看。

　　温馨提示：本行工作人员不会以任何理由向您索要短信验证码，请谨防电信诈骗。

东方银行信用卡中心
本邮件由系统自动发送，请勿直接回复。
"""
    hbody = """<html><head><meta charset="gb2312"><title>信用卡电子对账单</title></head>
<body>
<p>尊敬的李明先生：</p>
<p>您好！您2024年10月的信用卡电子对账单已生成。</p>
<table border="1" cellpadding="4">
<tr><td>本期应还金额</td><td>人民币 3,256.80 元</td></tr>
<tr><td>最低还款额</td><td>人民币 325.68 元</td></tr>
<tr><td>到期还款日</td><td>2024年11月25日</td></tr>
</table>
<p>您持有的基金产品本月净值变动情况，请登录手机银行“理财”栏目查看。</p>
<p><small>温馨提示：本行工作人员不会以任何理由向您索要短信验证码，请谨防电信诈骗。</small></p>
<p>东方银行信用卡中心<br>本邮件由系统自动发送，请勿直接回复。</p>
</body></html>
"""
    bnd = "=_dfbank_8f3a1c2b4d5e6f70"
    data = headers(
        "Received: from edm.dfbank.example.com (edm.dfbank.example.com [203.0.113.160])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 7Dd4oO2Tt8\n\tfor <liming@example.edu.cn>; Wed, 13 Nov 2024 06:00:44 +0800 (CST)",
        "Message-ID: <stmt.202410.0000123456@dfbank.example.com>",
        "From: " + ew_b("东方银行", "gb2312") + " <creditcard@dfbank.example.com>",
        "To: liming@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Wed, 13 Nov 2024 06:00:40 +0800",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{bnd}"',
    ) + B(
        "\n",
        f"--{bnd}\n",
        "Content-Type: text/plain; charset=gb2312\nContent-Transfer-Encoding: base64\n\n",
        b64(text.encode("gb2312")),
        f"\n--{bnd}\n",
        "Content-Type: text/html; charset=gb2312\nContent-Transfer-Encoding: base64\n\n",
        b64(hbody.encode("gb2312")),
        f"\n--{bnd}--\n",
    )
    add("ham/zh-bank-statement-alternative.eml", "ham",
        "credit-card statement notice mentioning 基金 normally; multipart/alternative GB2312 base64 text + HTML table",
        data, [("subject", subj), ("plain", text), ("html", hbody)])

    # 7 -------------------------------------------------------------------
    subj = "晨星文教基金會　慈善放映會邀請"
    body = """王經理您好：

　　感謝貴公司去年對本基金會公益活動的支持。
　　今年的慈善放映會定於十二月七日下午兩點，在台北市信義區的華星電影院舉行，屆時將邀請偏鄉學童一同觀賞。
　　隨信附上活動企劃書，敬請撥冗參閱。若貴公司願意繼續贊助，請於十一月二十日前回覆。

順頌　商祺

林怡君　敬上
財團法人晨星文教基金會
"""
    data = headers(
        recv("mail.example.org.tw", "192.0.2.111", "wang@corp.example.com", "Thu, 7 Nov 2024 10:20:30 +0800", "8Ee5pP3Uu9"),
        "Message-ID: <20241107102028.1234@example.org.tw>",
        "From: " + ew_b("林怡君", "big5") + " <lin@example.org.tw>",
        "To: wang@corp.example.com",
        "Subject: " + ew_b(subj, "big5"),
        "Date: Thu, 7 Nov 2024 10:20:28 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=big5",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("big5")
    add("ham/zh-foundation-big5.eml", "ham",
        "charity invitation in traditional Chinese with 基金會 and 電影院 (look-alikes of 基金 电影); Big5 8bit; `=?big5?B?` subject",
        data, [("subject", subj), ("plain", body)], ["!基金", "!电影"], covers=["基金会", "电影院"])

    # 8 -------------------------------------------------------------------
    subj = "图书馆新书通报（2024年11月）"
    hbody = """<html>
<head>
<meta charset="utf-8">
<title>图书馆新书通报</title>
<style type="text/css">
.free-tag { color: #2a7; font-weight: bold; }  /* 免费 资源标签 */
body { font-family: "Microsoft YaHei", sans-serif; }
</style>
<script type="text/javascript">
// 访问统计：免费版统计代码 (free tracker)
var _stat = { site: "lib", label: "免费" };
</script>
</head>
<body>
<h2>图书馆新书通报（2024年11月）</h2>
<p>本月新到中文图书 326 种、外文图书 58 种，主要涵盖计算机、经济管理、文学艺术等类别。</p>
<p>读者可通过馆藏目录查询，新书在二楼新书展示区陈列两周后上架。</p>
<p>开放时间：周一至周日 8:00&mdash;22:00</p>
</body>
</html>
"""
    assert "免费" in hbody and "free" in hbody
    data = headers(
        "Received: from lib.example.edu.cn (lib.example.edu.cn [10.0.8.20])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 9Ff6qQ4Vv1\n\tfor <all@example.edu.cn>; Fri, 15 Nov 2024 08:30:02 +0800 (CST)",
        "Message-ID: <newbooks-202411@lib.example.edu.cn>",
        "From: " + ew_b("图书馆", "utf-8") + " <lib@example.edu.cn>",
        "To: all@example.edu.cn",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Fri, 15 Nov 2024 08:30:00 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/html; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(hbody.encode("utf-8"))
    add("ham/zh-library-html-script-style.eml", "ham",
        "library newsletter, HTML-only; 免费 and free occur only inside `<style>` and `<script>` (must not count); UTF-8 base64",
        data, [("subject", subj), ("html", hbody)], ["!免费", "!free"])

    # 9 -------------------------------------------------------------------
    subj = "周末看了部老电影"
    body = """老王：

　　周末在家看了一部老电影《城南旧事》，小时候看过一次，现在再看感触完全不一样，推荐你也找来看看。
　　另外，我们剧社的新戏上周六首演很成功，下个月还要加演两场，到时候给你留票。

　　小陈
"""
    data = headers(
        recv("pc-chen", "198.51.100.60", "laowang@example.edu.cn", "Sun, 17 Nov 2024 21:05:00 +0800", "1Gg7rR5Ww2"),
        "Message-ID: <000c01d7a8b2$1f2e3d40$0a00a8c0@pcchen>",
        "From: xiaochen@example.com",
        "To: laowang@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Sun, 17 Nov 2024 21:04:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + body.encode("gbk")
    add("ham/zh-fake-base64-nocharset.eml", "ham",
        "friend's note using 电影 and 成功 normally; says base64 but body is plain GBK, and no charset declared (trec06c quirks combined)",
        data, [("subject", subj), ("plain", body)])

    # 10 ------------------------------------------------------------------
    subj = "本周实验进展"
    body = """王老师：

　　本周的细胞转染实验一共做了三批，成功率比上次提高了不少，大约在百分之七十左右。
　　具体数据整理好后发到您的邮箱。下周三组会由我来汇报。

学生　小刘
"""
    data = headers(
        "Received: from [10.2.33.101] (unknown [10.2.33.101])\n\tby mx1.example.edu.cn (Postfix) with ESMTPSA id 2Hh8sS6Xx3\n\tfor <wanglaoshi@example.edu.cn>; Thu, 21 Nov 2024 18:12:40 +0800 (CST)",
        "Message-ID: <7e3a1b2c-lab-report@example.edu.cn>",
        "From: xiaoliu@example.edu.cn",
        "To: wanglaoshi@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Thu, 21 Nov 2024 18:12:38 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n" + body.encode("gb2312")
    add("ham/zh-lab-7bit-label-8bit.eml", "ham",
        "student's lab report with 成功率 (not 成功); declares `7bit` but carries 8-bit GB2312 bytes",
        data, [("subject", subj), ("plain", body)], ["!成功"], covers=["成功率"])

    # 11 ------------------------------------------------------------------
    subj = "妈，我到学校了😊"
    body = """妈：

　　我已经平安到学校了，一切都好，别担心😊。
　　今天和室友一起去吃了𠮷野家的牛肉饭，味道还不错。
　　宿舍有暖气，被子也够用。周末再给你们打电话。

　　女儿
"""
    data = headers(
        recv("m.example.com", "203.0.113.190", "mom@example.net", "Sun, 1 Sep 2024 19:00:12 +0800", "3Ii9tT7Yy4"),
        "Message-ID: <m.1725188410.home@m.example.com>",
        "From: daughter@example.com",
        "To: mom@example.net",
        "Subject: " + ew_b(subj, "gb18030"),
        "Date: Sun, 1 Sep 2024 19:00:10 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb18030",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("gb18030")
    add("ham/zh-family-gb18030.eml", "ham",
        "family note; GB18030 8bit with 4-byte sequences (😊, 𠮷) in body and subject",
        data, [("subject", subj), ("plain", body)])

    # 12 ------------------------------------------------------------------
    subj = "【学术讲座】大语言模型与中文信息处理"
    body = """各位老师、同学：

　　计算机学院将于11月20日（周三）下午2:30在逸夫楼报告厅举办学术讲座。

　　题目：大语言模型与中文信息处理
　　主讲人：赵明教授

　　讲座免费向全校师生开放，无需报名，欢迎参加。

计算机学院
"""
    data = headers(
        "Received: from cs.example.edu.cn (cs.example.edu.cn [10.0.5.2])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 4Jj1uU8Zz5\n\tfor <all@example.edu.cn>; Mon, 18 Nov 2024 10:00:03 +0800 (CST)",
        "Message-ID: <talk-20241120@cs.example.edu.cn>",
        "From: cs-office@example.edu.cn",
        "To: all@example.edu.cn",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Mon, 18 Nov 2024 10:00:01 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=UTF-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body.encode("utf-8")
    add("ham/zh-seminar-free-admission.eml", "ham",
        "seminar announcement; legitimately contains the listed keyword 免费 (free admission); UTF-8 8bit",
        data, [("subject", subj), ("plain", body)])

    # 13 ------------------------------------------------------------------
    subj = "新一代开发平台立项说明"
    body = """各位：

　　公司决定启动新一代开发平台的建设，第一阶段的目标是统一各团队的构建与发布流程。
　　为避免费用超支，采购服务器前请先在系统里提交预算申请。
　　过去三年我们一直投入大量人力维护旧系统，新平台上线后这部分成本有望减半。
　　新平台的独特价值在于把测试、部署和监控集成到一处。
　　另外，财务部希望我们顺便开发财务报销模块，这部分放到第二阶段。

　　周五下午的评审会上再详细讨论。

技术部　老周
"""
    data = headers(
        "Received: from exch01.corp.example.com ([10.1.0.5])\n\tby mx1.example.com with ESMTP id 5Kk2vV9Aa6;\n\tTue, 19 Nov 2024 11:30:45 +0800",
        "Message-ID: <A7C9E1F3B5D74A2C@exch01.corp.example.com>",
        "From: laozhou@corp.example.com",
        "To: dev-all@corp.example.com",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Tue, 19 Nov 2024 11:30:43 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: base64",
    ) + b"\n" + b64(body.encode("utf-8"))
    add("ham/zh-project-cross-word-lookalikes.eml", "ham",
        "work mail where keywords appear only across word boundaries: 新一代|开发 (代开), 避免|费用 (免费), 一直|投入 (直投), 独特|价值 (特价), 开发|财务 (发财); UTF-8 base64",
        data, [("subject", subj), ("plain", body)], ["!代开", "!免费", "!直投", "!特价", "!发财"],
        covers=["新一代开发", "避免费用", "一直投入", "独特价值", "开发财务"])

    # 14 ------------------------------------------------------------------
    subj = "关于发放三八节女性福利的通知"
    text = """各部门：

　　为庆祝“三八”国际劳动妇女节，公司工会将向全体女职工发放女性福利：每人购物卡一张（面值三百元）。
　　请各部门于三月五日前将女职工名单报工会办公室，三月七日统一发放。

公司工会
二〇二五年三月三日
"""
    hbody = """<html><body>
<p>各部门：</p>
<p>为庆祝“三八”国际劳动妇女节，公司工会将向全体女职工发放女性福利：每人购物卡一张（面值三百元）。</p>
<p>请各部门于三月五日前将女职工名单报工会办公室，三月七日统一发放。</p>
<p align="right">公司工会<br>二〇二五年三月三日</p>
</body></html>
"""
    bnd = "----=_NextPart_000_0021_01DB8BF2.33A4B5C0"
    data = headers(
        "Received: from exch01.corp.example.com ([10.1.0.5])\n\tby mx1.example.com with ESMTP id 6Ll3wW1Bb7;\n\tMon, 3 Mar 2025 09:15:00 +0800",
        "Message-ID: <002101db8bf2$33a4b5c0$0501010a@hr>",
        "From: union@corp.example.com",
        "To: all@corp.example.com",
        "Subject: " + ew_q(subj, "GBK"),
        "Date: Mon, 3 Mar 2025 09:14:58 +0800",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative;\n\tboundary="{bnd}"',
    ) + B(
        "\nThis is a multi-part message in MIME format.\n\n",
        f"--{bnd}\n",
        'Content-Type: text/plain;\n\tcharset="gbk"\nContent-Transfer-Encoding: quoted-printable\n\n',
        qp(text.encode("gbk")),
        f"\n--{bnd}\n",
        'Content-Type: text/html;\n\tcharset="gbk"\nContent-Transfer-Encoding: quoted-printable\n\n',
        qp(hbody.encode("gbk")),
        f"\n--{bnd}--\n",
    )
    add("ham/zh-hr-notice-gbk-qp.eml", "ham",
        "HR notice with 女性福利 (女性|福利, not 性福); multipart/alternative GBK quoted-printable; `=?GBK?Q?` subject",
        data, [("subject", subj), ("plain", text), ("html", hbody)], ["!性福"], covers=["女性福利"])

    # 15 ------------------------------------------------------------------
    subj = "[读书会] 十一月共读《长恨歌》讨论纪要"
    body = """各位书友：

　　上周六的共读讨论很热烈，简单整理几点：
　　1. 大家普遍认为这部小说的感情色彩很浓，但叙述始终是克制的。
　　2. 有书友提出，王琦瑶在一些读者眼里几乎是个完美女孩，可作者恰恰写出了她的平凡与无奈。
　　3. 下次共读书目暂定为《繁花》，欢迎补充建议。

　　读书会秘书组
--
读书会邮件列表，退订请发信至 dushu-leave@lists.example.org
"""
    data = headers(
        "Received: from lists.example.org (lists.example.org [192.0.2.80])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 7Mm4xX2Cc8\n\tfor <ye@example.edu.cn>; Mon, 25 Nov 2024 20:20:20 +0800 (CST)",
        "Message-ID: <dushu-202411-digest@lists.example.org>",
        "From: dushu@lists.example.org",
        "To: dushu@lists.example.org",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Mon, 25 Nov 2024 20:20:18 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
        "List-Id: <dushu.lists.example.org>",
        "Precedence: list",
    ) + b"\n" + qp(body.encode("utf-8"))
    add("ham/zh-bookclub-list-lookalikes.eml", "ham",
        "book-club list post: 感情色彩 (感情|色彩, not 情色) and 完美女孩 (完美|女孩, not 美女); UTF-8 quoted-printable",
        data, [("subject", subj), ("plain", body)], ["!情色", "!美女"], covers=["感情色彩", "完美女孩"])

    # 16 ------------------------------------------------------------------
    subj = "会议时间调整"
    lines = ["各位：", "", "　　明天下午的组会改到三点开始，地点不变。", "　　请相互转告。", "", "办公室"]
    hdr = headers(
        recv("oa.example.edu.cn", "10.0.3.12", "group@example.edu.cn", "Wed, 27 Nov 2024 16:00:00 +0800", "8Nn5yY3Dd9"),
        "Message-ID: <mixed-eol-20241127@oa.example.edu.cn>",
        "From: office@example.edu.cn",
        "To: group@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Wed, 27 Nov 2024 15:59:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
        "Content-Transfer-Encoding: 8bit",
    )
    hl = hdr.split(b"\n")[:-1]
    data = b""
    for i, l in enumerate(hl):                       # alternate CRLF / LF in headers
        data += l + (b"\r\n" if i % 2 == 0 else b"\n")
    data += b"\r\n"
    for i, l in enumerate(lines):
        data += l.encode("gb2312") + (b"\n" if i % 2 == 0 else b"\r\n")
    body = "\n".join(lines) + "\n"
    add("ham/zh-mixed-line-endings.eml", "ham",
        "short office notice; CRLF and bare LF mixed line by line (headers and body); GB2312 8bit",
        data, [("subject", subj), ("plain", body)])

    # 17 ------------------------------------------------------------------
    subj = "回复：合同扫描件"
    text = """张经理：

　　合同扫描件见附件，请查收。盖章版原件已于今天上午寄出，快递单号 SF0000000000。
　　感谢您这段时间的配合，项目能顺利签约离不开贵司的支持，预祝合作成功！

李娜

> 李经理，请把双方盖章后的合同扫描件发我一份，谢谢。
> 张伟
"""
    hbody = "<html><body><div>" + "<br>\n".join(htmllib.escape(l) for l in text.split("\n")) + "</div></body></html>\n"
    pdf = b"%PDF-1.4\n% placeholder, not a real scan\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    outer, alt = "=_mixed_3c9d2e1f", "=_alt_3c9d2e1f"
    data = headers(
        "Received: from mail.example.com (mail.example.com [198.51.100.2])\n\tby mx1.example.com with ESMTPS id 9Oo6zZ4Ee1;\n\tThu, 28 Nov 2024 14:02:33 +0800",
        "Message-ID: <reply-contract-1128@example.com>",
        "In-Reply-To: <req-contract-1127@corp.example.com>",
        "From: " + ew_b("李娜", "utf-8") + " <lina@example.com>",
        "To: zhangwei@corp.example.com",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Thu, 28 Nov 2024 14:02:30 +0800",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{outer}"',
    ) + B(
        "\n",
        f"--{outer}\n",
        f'Content-Type: multipart/alternative; boundary="{alt}"\n\n',
        f"--{alt}\n",
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
        qp(text.encode("utf-8")),
        f"\n--{alt}\n",
        "Content-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n",
        qp(hbody.encode("utf-8")),
        f"\n--{alt}--\n",
        f"\n--{outer}\n",
        'Content-Type: application/pdf; name="contract-scan.pdf"\nContent-Disposition: attachment; filename="contract-scan.pdf"\nContent-Transfer-Encoding: base64\n\n',
        b64(pdf),
        f"\n--{outer}--\n",
    )
    add("ham/zh-reply-with-attachment.eml", "ham",
        "business reply with quoted text and a PDF attachment, 成功 in normal use; multipart/mixed > multipart/alternative, UTF-8 QP",
        data, [("subject", subj), ("plain", text), ("html", hbody)])


# ==========================================================================
# English ham and malformed mail
# ==========================================================================

def ham_en_and_malformed():
    subj = "Fixtures: Essex v Sussex, 14 June"
    body = """Hi all,

The club trip to Chelmsford for Essex v Sussex is confirmed for Saturday
14 June. The coach leaves the pavilion at 8:15 sharp; please be on time.

Tickets are 18 pounds each and must be paid to Margaret by the end of May.
If you can't make it, the Middlesex home game on 28 June is the next outing.

Thanks,
Tom
Wessex Cricket Supporters' Club
"""
    data = headers(
        recv("smtp.example.co.uk", "192.0.2.44", "members@example.org", "Tue, 6 May 2025 18:00:00 +0100", "1Pp7aA5Ff2"),
        "Message-ID: <fixtures-2025-06@example.co.uk>",
        "From: Tom Hughes <tom@example.co.uk>",
        "To: members@example.org",
        "Subject: " + subj,
        "Date: Tue, 6 May 2025 17:59:58 +0100",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n" + B(body)
    add("ham/en-essex-sussex.eml", "ham",
        "cricket-club mail: Essex, Sussex, Middlesex, Wessex contain `sex` but not as a word; 7bit",
        data, [("subject", subj), ("plain", body)], ["!sex"], covers=["essex", "sussex", "middlesex", "wessex"])

    subj = "Museum talk: the sextant and the freedom of the seas"
    body = """Dear members,

Our next evening talk is on Thursday 6 March at 7 pm in the Chart Room.
Dr Helen Ward will speak on “The sextant and the freedom of the seas”, tracing
how celestial navigation shaped maritime law from Grotius to the present day.
Captain Freeman's own brass sextant, on loan from his family, will be on display.

Members may bring one guest at no charge. Tea and biscuits from 6:30, in the
usual carefree spirit of our winter programme.

With best wishes,
The Secretary
Maritime History Society
"""
    data = headers(
        recv("mail.example.org.uk", "198.51.100.150", "members@example.org", "Mon, 24 Feb 2025 09:00:00 +0000", "2Qq8bB6Gg3"),
        "Message-ID: <talk-2025-03-06@example.org.uk>",
        "From: Maritime History Society <secretary@example.org.uk>",
        "To: members@example.org",
        "Subject: " + subj,
        "Date: Mon, 24 Feb 2025 08:59:58 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ) + b"\n" + qp(body.encode("utf-8"))
    add("ham/en-freedom-sextant.eml", "ham",
        "society newsletter: freedom, Freeman, carefree, sextant (contain `free`/`sex`, not as words); UTF-8 quoted-printable",
        data, [("subject", subj), ("plain", body)], ["!free", "!sex"],
        covers=["freedom", "freeman", "carefree", "sextant"])

    subj = "Q3 planning meeting"
    body = """Hi team,

Let's meet on Thursday at 10:00 in room 4B to go through the Q3 plan.
If you are not free then, let me know and I'll find another slot.

Agenda:
1. Budget review
2. Hiring
3. Release schedule

Thanks,
Priya
"""
    data = crlf(headers(
        "Received: from exch02.corp.example.com ([10.1.0.6])\n\tby mx1.example.com with ESMTP id 3Rr9cC7Hh4;\n\tMon, 30 Jun 2025 09:12:00 +0000",
        "Message-ID: <q3-plan-0630@corp.example.com>",
        "From: Priya Shah <priya@corp.example.com>",
        "To: product-team@corp.example.com",
        "Subject: " + subj,
        "Date: Mon, 30 Jun 2025 09:11:58 +0000",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "Content-Transfer-Encoding: 7bit",
    ) + b"\n" + B(body))
    add("ham/en-meeting-crlf.eml", "ham",
        "meeting request; uses `free` legitimately (\"if you are not free\"); CRLF line endings, 7bit",
        data, [("subject", subj), ("plain", body)])

    subj = "Release notes: Tessera 2.4"
    text = """Tessera 2.4 is out.

Highlights:
 * indexing is about 30% faster on large repositories;
 * a new "café" colour scheme, contributed by Zoë Müller;
 * the configuration file now accepts comments.

Full notes: https://tessera.example.org/releases/2.4

-- 
You are receiving this because you subscribed to tessera-announce.
"""
    hbody = """<html><body>
<h2>Tessera 2.4 is out</h2>
<ul>
<li>indexing is about 30% faster on large repositories;</li>
<li>a new &ldquo;caf&eacute;&rdquo; colour scheme, contributed by Zo&euml; M&uuml;ller;</li>
<li>the configuration file now accepts comments.</li>
</ul>
<p><a href="https://tessera.example.org/releases/2.4">Full notes</a></p>
</body></html>
"""
    bnd = "===============8347112093455123675=="
    data = headers(
        "Received: from announce.example.org (announce.example.org [203.0.113.70])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 4Ss1dD8Ii5\n\tfor <dev@example.edu.cn>; Wed, 2 Jul 2025 20:00:10 +0800 (CST)",
        "Message-ID: <tessera-2.4-announce@example.org>",
        "From: Tessera Project <announce@tessera.example.org>",
        "To: dev@example.edu.cn",
        "Subject: " + subj,
        "Date: Wed, 2 Jul 2025 12:00:08 +0000",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{bnd}"',
        "List-Id: <tessera-announce.tessera.example.org>",
    ) + B(
        "\n",
        f"--{bnd}\n",
        'Content-Type: text/plain; charset="iso-8859-1"\nContent-Transfer-Encoding: quoted-printable\n\n',
        qp(text.encode("iso-8859-1")),
        f"\n--{bnd}\n",
        'Content-Type: text/html; charset="iso-8859-1"\nContent-Transfer-Encoding: quoted-printable\n\n',
        qp(hbody.encode("iso-8859-1")),
        f"\n--{bnd}--\n",
    )
    add("ham/en-release-notes-alternative.eml", "ham",
        "software release announcement; multipart/alternative ISO-8859-1 quoted-printable, HTML named entities",
        data, [("subject", subj), ("plain", text), ("html", hbody)])

    subj = "nightly build log"
    body = (b"Hi Sam,\n\nThe nightly build failed again. Here is the tail of the log; the file\n"
            b"itself looks corrupted:\n\n"
            b"  [ld] writing output\x00\x00\x00 target/release/app\n"
            b"  [ld] \xff\xfe\xc3\x28 unexpected \xe4\xb8 record \xa0\x80\n"
            b"  error: exit status 1\n\n"
            b"I'll re-run it this morning and let you know.\n\nJun\n")
    assert b"\x00" in body
    try:
        body.decode("utf-8")
        raise AssertionError("must be invalid UTF-8")
    except UnicodeDecodeError:
        pass
    data = headers(
        "Received: from ci.corp.example.com ([10.1.0.40])\n\tby mx1.example.com with ESMTP id 5Tt2eE9Jj6;\n\tFri, 4 Jul 2025 07:30:00 +0800",
        "Message-ID: <ci-nightly-0704@corp.example.com>",
        "From: Jun Wei <jun@corp.example.com>",
        "To: sam@corp.example.com",
        "Subject: " + subj,
        "Date: Fri, 4 Jul 2025 07:29:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n" + body
    add("ham/en-nul-invalid-utf8.eml", "ham",
        "colleague's note quoting a corrupted build log: NUL bytes and invalid UTF-8 in a body declared utf-8",
        data, [("subject", subj), ("plain", body.decode("utf-8", "replace"))])

    subj = "明天上午九点开会"
    data = headers(
        "Received: from oa.example.edu.cn ([10.0.3.12])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 6Uu3fF1Kk7;\n\tTue, 3 Dec 2024 17:00:00 +0800",
        "Message-ID: <headers-only-20241203@oa.example.edu.cn>",
        "From: office@example.edu.cn",
        "To: group@example.edu.cn",
        "Subject: " + ew_b(subj, "gb2312"),
        "Date: Tue, 3 Dec 2024 16:59:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=gb2312",
    )
    add("ham/headers-only-no-body.eml", "ham",
        "headers only: no blank line and no body (the subject carries the whole message)",
        data, [("subject", subj)])

    subj = "收到"
    data = headers(
        "Received: from m.example.com ([203.0.113.190])\n\tby mx1.example.edu.cn (Postfix) with ESMTP id 7Vv4gG2Ll8;\n\tWed, 4 Dec 2024 08:00:00 +0800",
        "Message-ID: <empty-body-20241204@m.example.com>",
        "From: daughter@example.com",
        "To: mom@example.net",
        "Subject: " + ew_b(subj, "utf-8"),
        "Date: Wed, 4 Dec 2024 07:59:58 +0800",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ) + b"\n"
    add("ham/empty-body.eml", "ham",
        "headers, the blank separator line, and an empty body",
        data, [("subject", subj)])

    junk = stream("garbage-bytes", 4096)
    add("ham/garbage-bytes.eml", "ham",
        "4 KiB of pseudo-random bytes, not a message at all (no spam content, so labelled ham); must not crash or hang",
        junk, [("plain", junk.decode("gbk", "ignore")), ("plain", junk.decode("utf-8", "ignore")),
               ("plain", junk.decode("big5", "ignore")), ("plain", junk.decode("latin-1"))])


# ==========================================================================
# self-check
# ==========================================================================

ZW = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)
SEP = r"[\s\-\.\*_·~|/+#]"
CJK = r"[\u3400-\u9fff\U00020000-\U0002ffff]"

_T2S = None


def t2s(s):
    """Traditional -> simplified, using the fast2s table the filter uses when it is
    in the local cargo registry; otherwise a small built-in table covering this corpus."""
    global _T2S
    if _T2S is None:
        import glob
        files = sorted(glob.glob(os.path.expanduser("~/.cargo/registry/src/*/fast2s-*/src/t2s.txt")))
        _T2S = {}
        if files:
            for line in open(files[-1], encoding="utf-8"):
                p = line.split()
                if len(p) == 2 and len(p[0]) == 1 and len(p[1]) == 1:
                    _T2S[p[0]] = p[1]
        else:
            print("note: fast2s table not found, using built-in subset", file=sys.stderr)
            for a, b in zip("費發財優賺錢體會電開寶價銷熱偉開場時貨資錢", "费发财优赚钱体会电开宝价销热伟开场时货资钱"):
                _T2S[a] = b
    return "".join(_T2S.get(c, c) for c in s)


def html_text(h):
    h = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", h)
    h = re.sub(r"(?s)<!--.*?-->", "", h)
    h = re.sub(r'(?is)<(span|div|font|p)\b[^>]*style="[^"]*(display:\s*none|font-size:\s*0)[^"]*"[^>]*>.*?</\1\s*>', "", h)
    h = re.sub(r"(?is)</?(p|div|br|tr|td|li|ul|h\d|table|title|head|body|html)\b[^>]*>", "\n", h)
    h = re.sub(r"(?s)<[^>]*>", "", h)
    return htmllib.unescape(h)


def normalize(kind, s, join_separators=True, drop_hidden=True):
    if kind == "html":
        if not drop_hidden:
            s = re.sub(r'style="[^"]*"', "", s)
        s = html_text(s)
    s = s.translate(ZW)
    s = unicodedata.normalize("NFKC", s).lower()
    s = t2s(s)
    if join_separators:
        s = re.sub(f"(?<={CJK}){SEP}+(?={CJK})", "", s)
    return s


def occurrences(text, kw):
    if kw.isascii():
        return [m.start() for m in re.finditer(rf"(?<![a-z0-9]){re.escape(kw)}(?![a-z0-9])", text)]
    return [m.start() for m in re.finditer(re.escape(kw), text)]


def covered(text, pos, kw, covers):
    for c in covers:
        for m in re.finditer(re.escape(c), text):
            if m.start() <= pos and pos + len(kw) <= m.end():
                return True
    return False


def found(m, **kw):
    texts = [normalize(k, s, **kw) for k, s in m.texts]
    res = set()
    for kwd in KW_ZH + KW_EN + KW_COMMON:
        for t in texts:
            if any(not covered(t, p, kwd, m.covers) for p in occurrences(t, kwd)):
                res.add(kwd)
    return res, texts


def check():
    bad = 0
    for m in MESSAGES:
        f, texts = found(m)
        if m.label == "spam":
            common = f & set(KW_COMMON)
            if common:
                print(f"{m.path}: spam contains common words {common}"); bad += 1
            exp = set(m.expect or ())
            if f - set(KW_COMMON) != exp:
                print(f"{m.path}: found {sorted(f)} expected {sorted(exp)}"); bad += 1
            strict, _ = found(m, join_separators=False, drop_hidden=False)
            if strict != f:
                print(f"  info {m.path}: without undoing tricks only {sorted(strict)}")
        else:
            for e in m.expect or ():
                assert e.startswith("!"), (m.path, e)
                kwd = e[1:]
                if kwd in f:
                    print(f"{m.path}: negated {kwd} really occurs"); bad += 1
                if not any(occurrences(t, kwd) for t in texts) and not any(kwd in s for _, s in m.texts):
                    print(f"{m.path}: negated {kwd} does not occur even as a substring (pointless)"); bad += 1
            print(f"  info {m.path}: real keyword words {sorted(f)}" if f else "", end="\n" if f else "")
    print("check:", "OK" if not bad else f"{bad} problem(s)")
    return bad == 0


# ==========================================================================
# output
# ==========================================================================

README_HEAD = """# chaff hand-made test corpus

Original, hand-written RFC 822 messages for chaff's tests: every message text here was
written for this project (none is copied or adapted from real mail). Regenerate with
`python3 corpus/tools/make.py` (byte-for-byte reproducible; `--check` also re-verifies
`EXPECT` against the source texts).

Files:

- `ham/*.eml`, `spam/*.eml` — raw messages with exact bytes (some CRLF, some LF, some mixed).
- `index` — TREC format, one line per message: `spam RELPATH` or `ham RELPATH`, relative to this folder.
- `EXPECT` — one line per message with a decoding or evasion trick or with look-alike words:
  `RELPATH KW KW ...` lists the canonical keywords (simplified Chinese, lowercase Latin) that a
  correct filter must find in that message after decoding and undoing the trick;
  `RELPATH !KW !KW ...` lists keywords that must NOT be found (look-alikes such as 基金会,
  成功率, 代理人, 电影院, Essex, freedom, or keywords occurring only inside `<script>`/`<style>`).
  Positive lines are complete with respect to this vocabulary, counting the subject:
  free: 免费 优惠 特惠 特价 便宜 廉价; adult: 色情 情色 激情 伟哥 性福 裸体 美女;
  money: 赚钱 发财 致富 股票 代开 代理 热销 法宝 宝典 直投; English: free viagra sex cheap casino.
  Spam messages avoid 男人 女人 电影 成功 基金 altogether. Other words a keyword list may hold
  (e.g. 发票, 彩票) are not listed, so tests should treat positive lines as "must find at least these".
  Latin keywords are whole words; a CJK keyword "is in" a message when it is a word there (not just a
  substring of a longer word such as 电影院, and not straddling two words as in 避免|费用).
- `tools/make.py` — the generator.

Notes on choices:

- Hidden HTML text (`display:none`, `font-size:0`) is treated as not being there: in
  `spam/zh-html-hidden-inside-keyword.eml` the keywords only appear once the hidden junk is removed.
- `spam/zh-deep-nesting-40.eml` is not in `EXPECT` (a filter may legitimately cap MIME depth); it is a
  robustness test. Its innermost text contains 美女 激情 免费.
- `ham/garbage-bytes.eml` is random bytes; it has no spam content, so it is labelled ham.
- The huge line in `spam/zh-huge-line.eml` comes after the keywords, so truncating filters still
  find them.
- Word-hood was checked with a re-implementation of jieba's dictionary segmentation (jieba-rs 0.11
  `dict.txt`, the listed keywords added to it): every positive keyword is a segment somewhere in its
  message (spam text avoids dictionary compounds such as 恭喜发财 or 价格便宜 that would swallow the
  keyword), and no negated keyword is a segment in its ham message.
- Separators undone for CJK evasions: ASCII space/tab/newline, U+3000, `- . * _ · ~ | / + #`
  between two CJK characters; zero-width characters removed are U+200B U+200C U+200D U+2060 U+FEFF;
  full-width Latin folds by NFKC; traditional folds to simplified by character (fast2s table).
- `EXPECT` has no comment or blank lines; fields are separated by single spaces.

| file | label | what it exercises |
|---|---|---|
"""


def main():
    spam_zh()
    spam_en()
    ham_zh()
    ham_en_and_malformed()
    MESSAGES.sort(key=lambda m: m.path)
    for d in ("ham", "spam"):
        os.makedirs(os.path.join(CORPUS, d), exist_ok=True)
        for f in os.listdir(os.path.join(CORPUS, d)):
            if f.endswith(".eml") and not any(m.path == f"{d}/{f}" for m in MESSAGES):
                os.remove(os.path.join(CORPUS, d, f))
    for m in MESSAGES:
        with open(os.path.join(CORPUS, m.path), "wb") as fh:
            fh.write(m.data)
    with open(os.path.join(CORPUS, "index"), "w", encoding="utf-8", newline="\n") as fh:
        for m in MESSAGES:
            fh.write(f"{m.label} {m.path}\n")
    with open(os.path.join(CORPUS, "EXPECT"), "w", encoding="utf-8", newline="\n") as fh:
        for m in MESSAGES:
            if m.expect and m.in_expect:
                fh.write(m.path + " " + " ".join(m.expect) + "\n")
    with open(os.path.join(CORPUS, "README.md"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write(README_HEAD)
        for m in MESSAGES:
            fh.write(f"| `{m.path}` | {m.label} | {m.what.replace('|', '&#124;')} |\n")
    total = sum(len(m.data) for m in MESSAGES)
    print(f"{len(MESSAGES)} messages ({sum(m.label == 'spam' for m in MESSAGES)} spam), {total} bytes")
    if "--check" in sys.argv[1:]:
        sys.exit(0 if check() else 1)


if __name__ == "__main__":
    main()
