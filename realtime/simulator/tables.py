"""The simulated room's world: where viewers come from, what they say, buy and send, and how they behave.

Data only; ``viewers`` and ``show`` draw from it with a seeded random generator, so changing
any value (or its order) changes every timeline.
"""

from __future__ import annotations

# country: (lang tag, IANA zones, currency, weight)
GEO: dict[str, tuple[str, tuple[str, ...], str, int]] = {
    "US": ("en-US", ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"), "USD", 22),
    "GB": ("en-GB", ("Europe/London",), "GBP", 6), "PH": ("en-PH", ("Asia/Manila",), "PHP", 3),
    "MX": ("es-MX", ("America/Mexico_City", "America/Monterrey", "America/Tijuana"), "MXN", 8),
    "ES": ("es-ES", ("Europe/Madrid",), "EUR", 4), "AR": ("es-AR", ("America/Argentina/Buenos_Aires",), "ARS", 2),
    "BR": ("pt-BR", ("America/Sao_Paulo", "America/Manaus", "America/Recife"), "BRL", 8),
    "PT": ("pt-PT", ("Europe/Lisbon",), "EUR", 2), "SA": ("ar-SA", ("Asia/Riyadh",), "SAR", 5),
    "AE": ("ar-AE", ("Asia/Dubai",), "AED", 2), "EG": ("ar-EG", ("Africa/Cairo",), "EGP", 2),
    "DE": ("de-DE", ("Europe/Berlin",), "EUR", 5), "AT": ("de-AT", ("Europe/Vienna",), "EUR", 1),
    "ID": ("id-ID", ("Asia/Jakarta", "Asia/Makassar"), "IDR", 8), "JP": ("ja-JP", ("Asia/Tokyo",), "JPY", 4),
    "TW": ("zh-TW", ("Asia/Taipei",), "TWD", 2), "SG": ("zh-SG", ("Asia/Singapore",), "SGD", 2),
    "FR": ("fr-FR", ("Europe/Paris",), "EUR", 4), "CA": ("fr-CA", ("America/Toronto",), "CAD", 2),
    "TH": ("th-TH", ("Asia/Bangkok",), "THB", 3), "VN": ("vi-VN", ("Asia/Ho_Chi_Minh",), "VND", 3),
    "IL": ("he-IL", ("Asia/Jerusalem",), "ILS", 1)}
# currency: (units per USD, rounding step)
FX: dict[str, tuple[float, float]] = {
    "USD": (1, .01), "GBP": (.79, .01), "EUR": (.92, .01), "PHP": (58, 1), "MXN": (18.5, 1), "ARS": (980, 10),
    "BRL": (5.6, .1), "SAR": (3.75, .05), "AED": (3.67, .05), "EGP": (49, 1), "IDR": (16000, 1000),
    "JPY": (150, 10), "TWD": (32, 1), "SGD": (1.34, .01), "CAD": (1.38, .01), "THB": (35, 1), "VND": (25000, 1000),
    "ILS": (3.7, .1)}
# lang: (statements, questions) - questions end in ?, ？, ؟ or are ¿...?
CHAT: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "en": (("love this!!", "just ordered 🛒", "hi from Texas 👋", "that color is so pretty 😍", "first time here",
            "🔥🔥🔥", "omg yes"),
           ("does it come in blue?", "how much is shipping?", "is it true to size?", "can you show the back please?",
            "do you ship to Canada?")),
    "es": (("me encanta 😍", "saludos desde CDMX", "ya lo compré", "qué bonito color"),
           ("¿cuánto cuesta el envío?", "¿hay talla M?", "¿lo tienen en negro?", "¿envían a Colombia?")),
    "pt": (("amei demais ❤️", "oi de São Paulo", "já comprei o meu"),
           ("tem tamanho P?", "quanto custa o frete?", "chega antes do Natal?")),
    "ar": (("جميل جداً 😍", "مرحبا من الرياض", "اشتريت واحد"),
           ("كم السعر؟", "هل يوجد توصيل إلى جدة؟", "هل يوجد لون أسود?")),
    "de": (("sieht super aus!", "Grüße aus Berlin 👋", "hab gerade bestellt"),
           ("Gibt es das auch in Blau?", "Wie lange dauert der Versand?", "Ist das waschbar?")),
    "id": (("bagus banget kak 😍", "halo dari Jakarta", "udah checkout ya"),
           ("ready size L kak?", "ongkirnya berapa kak?", "bisa COD ga?")),
    "ja": (("かわいい！", "こんばんは〜", "買いました✨"),
           ("青はありますか？", "サイズ感はどうですか？", "送料はいくらですか？")),
    "zh": (("好漂亮 😍", "大家好", "已下单"), ("有蓝色的吗？", "运费多少？", "什么时候发货?")),
    "fr": (("trop beau 😍", "coucou de Lyon", "je viens de commander"),
           ("c'est combien la livraison ?", "il existe en bleu ?", "ça taille grand ?")),
    "th": (("สวยมากค่ะ 😍", "สวัสดีค่ะ", "สั่งแล้วค่ะ"), ("มีสีฟ้าไหมคะ?", "ส่งฟรีไหม?")),
    "vi": (("đẹp quá 😍", "chào shop", "đã đặt hàng rồi"), ("còn size M không ạ?", "ship về Hà Nội bao lâu?")),
    "he": (("מהמם 😍", "שלום מתל אביב"), ("יש משלוח לישראל?", "כמה זה עולה?"))}
CHAT_LANGS = tuple(CHAT)
NAMES: dict[str, tuple[str, ...]] = {
    "en": ("Anna K", "jess💖", "Mike_T", "Taylor ✨", "brittany.shops", "Kayla 🦋"),
    "es": ("María José", "Zoë 🦊", "Carlos 🇲🇽", "Lupita"),
    "pt": ("João Pedro", "Bia 🌻", "Luana"), "ar": ("نورة 🌙", "محمد", "عبدالله ✨", "ريم"), "he": ("דנה", "יוסי 🎧"),
    "de": ("Jürgen", "Lena 🌿", "Jörg M."), "id": ("Putri Ayu", "Rina❤️", "Dewi"),
    "ja": ("さくら🌸", "ゆうき", "ハルカ"),
    "zh": ("小红", "王芳🌷", "阿杰"), "fr": ("Chloé", "Émile", "Maëlle ✿"), "th": ("น้ำฝน", "ต้นข้าว"),
    "vi": ("Nguyễn Thảo", "Trần Minh 🍜")}
HOSTILE_NAMES: tuple[str, ...] = (
    "<script>alert(1)</script>", "<b>bold</b> buyer", "\u202eevil\u202c name", "{name}", "{product} {{x}} {0}",
    "Robert'); DROP TABLE viewers;--", "%s%n%x", "Z̷a̷l̷g̷o̷ ̷t̷e̷x̷t̷", "\u200b", "", "👨‍👩‍👧‍👦🔥💯",
    "\u200fمريم\u200e RTL mix", "שרה <i>כהן</i>", ("Lorem ipsum dolor sit amet 🌟 " * 10)[:256])
HOSTILE_TEXT = ("<script>alert(1)</script>", "<b>SALE</b> <img src=x onerror=alert(1)>", "hi {name}, use {product}!",
                "\u202egnp.exe\u202c", "'; DROP TABLE viewers;--", "z̴̢a̸l̷g̶o̵", "so good " * 240, "",
                "💖" * 60)
SKUS: tuple[tuple[str, float], ...] = tuple(zip(
    ("lip-tint-rose", "lip-tint-coral", "glow-serum-30ml", "sunscreen-spf50", "cushion-21", "cushion-23", "brow-pencil",
     "mascara-black", "hair-clip-set", "silk-scrunchie", "tote-canvas", "phone-strap", "mini-fan", "led-mirror",
     "nail-kit", "perfume-10ml", "sheet-mask-10", "hoodie-m", "hoodie-l", "socks-3pack"),
    (12.99, 12.99, 24.5, 17.99, 29.99, 29.99, 8.99, 11.5, 6.99, 9.99, 19.99, 7.99, 14.99, 39.9, 21.0, 34.99, 15.99,
     44.99, 44.99, 9.5), strict=True))
PRICE = dict(SKUS)
SKU_W = tuple(1 / (i + 1) for i in range(len(SKUS)))
GIFTS = (("Rose", .01, 50), ("Finger Heart", .07, 20), ("Doughnut", .4, 8), ("Hat and Mustache", 1.3, 4),
         ("Galaxy", 13.5, 1), ("Lion", 400.0, .1))
KINDS = ("lurker", "liker", "chatter", "shopper", "fan")
KIND_P = (.40, .22, .18, .12, .08)
ACTIVITY = {"lurker": 0.0, "liker": 3.0, "chatter": 2.0, "shopper": 1.5, "fan": 1.2}
# kind: cumulative thresholds over (like, comment, share, follow, gift, view, cart, order)
ACTIONS = ("like", "comment", "share", "follow", "gift", "view", "cart", "order")
MIX = {"liker": (.84, .05, .04, .03, .03, .01, 0, 0), "chatter": (.25, .60, .03, .03, .02, .05, .02, 0),
       "shopper": (.12, .15, .01, .02, 0, .38, .22, .10), "fan": (.30, .10, .15, .15, .28, .02, 0, 0)}
CUM = {k: tuple(sum(p[:i + 1]) for i in range(len(p))) for k, p in MIX.items()}
