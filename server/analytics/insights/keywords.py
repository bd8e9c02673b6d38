"""A hand-written keyword list per category.

Three uses: it decides a post's category when it hits the keywords (the linear model decides
the rest, docs/ANALYTICS_MODELS.md), it weakly labels unlabelled tweets for training
(bench/insights_train.py), and alone it is the keyword baseline (bench/insights.py).

English, Spanish, Greek and Japanese, the languages of the public test set. Japanese words
match anywhere in a post (it has no spaces); the others match whole words or hashtags.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Final

from server.analytics.insights.taxonomy import CATEGORIES, CATEGORY_DESCRIPTIONS

KEYWORDS: Final[dict[str, str]] = {
    "Arts & Culture": "art artist artwork painting painter drawing museum gallery exhibition "
    "poetry poem novel book books author literature theatre theater history photography "
    "sculpture arte pintura museo libro libros poesía literatura τέχνη βιβλίο μουσείο "
    "ποίηση 美術 絵画 展覧会 小説 読書",
    "Business & Finance": "business market markets stock stocks economy startup ceo company "
    "companies investor investors investing invest finance financial bitcoin crypto bank "
    "money sales marketing entrepreneur jobs hiring empresa economía mercado dinero banco "
    "negocio negocios οικονομία επιχείρηση τράπεζα 経済 株価 投資 ビジネス 企業",
    "Daily Life": "today tonight morning tired sleep bored weekend monday coffee mood feeling "
    "feel lol hoy mañana dormir cansado σήμερα καλημέρα κουρασμένος 今日 眠い 朝",
    "Education": "school college university student students teacher teachers class exam "
    "exams homework learn learning study studying lecture course escuela universidad "
    "estudiantes examen clase σχολείο πανεπιστήμιο μαθητές εξετάσεις 学校 大学 勉強 試験 授業",
    "Entertainment": "movie movies film films tv series episode season netflix actor actress "
    "celebrity hollywood oscars trailer cinema show película películas serie cine actor "
    "ταινία σειρά σινεμά ηθοποιός 映画 ドラマ アニメ 俳優 芸能",
    "Family & Relationships": "mom mum dad mother father son daughter baby kids family "
    "husband wife boyfriend girlfriend wedding love friend friends marriage dating mamá "
    "papá hijo hija familia novio novia amigos boda μαμά μπαμπάς οικογένεια παιδιά φίλοι "
    "γάμος 家族 子供 母 父 彼氏 彼女 結婚 友達",
    "Fashion & Beauty": "fashion style outfit dress dresses shoes makeup skincare beauty "
    "hair nails model vogue wear moda ropa vestido maquillaje belleza μόδα ρούχα μακιγιάζ "
    "ファッション コーデ メイク 化粧 コスメ",
    "Food & Drink": "food eat eating dinner lunch breakfast recipe cooking cook pizza burger "
    "restaurant delicious chocolate cake wine beer drink comida cena almuerzo receta "
    "restaurante cerveza φαγητό συνταγή εστιατόριο μαγειρική ご飯 料理 ランチ ラーメン 美味しい",
    "Gaming": "game games gaming gamer xbox playstation ps4 ps5 nintendo switch fortnite "
    "minecraft twitch esports steam videojuego videojuegos παιχνίδι ゲーム 任天堂 プレステ",
    "Health & Fitness": "health healthy fitness workout gym exercise run running yoga diet "
    "weight doctor hospital covid vaccine mental salud ejercicio gimnasio vacuna médico "
    "υγεία γυμναστική εμβόλιο γιατρός 健康 筋トレ ダイエット 病院 ワクチン",
    "Music": "music song songs album single concert tour band singer rapper spotify "
    "playlist guitar música canción concierto disco cantante μουσική τραγούδι συναυλία "
    "音楽 曲 ライブ アルバム 歌",
    "News & Politics": "news president government election elections vote trump biden "
    "obama congress senate police war protest law minister politics political party "
    "noticias gobierno elecciones presidente política policía guerra ειδήσεις κυβέρνηση "
    "εκλογές πρωθυπουργός πολιτική αστυνομία ニュース 政府 選挙 首相 政治 警察",
    "Science & Technology": "tech technology apple iphone android google microsoft software "
    "app ai computer internet science scientists research space nasa data robot "
    "tecnología ciencia ordenador τεχνολογία επιστήμη υπολογιστής 科学 技術 スマホ アプリ パソコン",
    "Sports": "football soccer nfl nba mlb nhl basketball baseball tennis golf cricket "
    "match goal team league champions player coach fútbol partido gol equipo liga "
    "ποδόσφαιρο αγώνας γκολ ομάδα μπάσκετ 野球 サッカー 試合 選手 優勝",
    "Travel": "travel trip vacation holiday holidays flight airport hotel beach tourism "
    "adventure hiking mountains viaje vacaciones vuelo playa hotel ταξίδι διακοπές "
    "παραλία ξενοδοχείο 旅行 観光 ホテル 空港",
    "Other": "hobby hobbies garden gardening fishing knitting collecting diy crafts pets "
    "jardín pesca κήπος ψάρεμα 趣味 釣り",
}

_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


class KeywordMatcher:
    def __init__(self) -> None:
        self._words: dict[str, str] = {}
        self._substrings: list[tuple[str, str]] = []
        for category, words in KEYWORDS.items():
            if category not in CATEGORY_DESCRIPTIONS:
                raise ValueError(f"{category!r} is not in the taxonomy")
            for word in words.split():
                if _JAPANESE.search(word):
                    self._substrings.append((word, category))
                else:
                    self._words.setdefault(word, category)
        self._token = re.compile(r"\w+")

    def votes(self, text: str) -> Counter[str]:
        counts: Counter[str] = Counter()
        for token in self._token.findall(text.lower()):
            if token in self._words:
                counts[self._words[token]] += 1
        for word, category in self._substrings:
            if word in text:
                counts[category] += 1
        return counts

    def predict(self, text: str, default: str) -> str:
        """The category with the most keyword hits (ties: taxonomy order), else `default`."""
        counts = self.votes(text)
        if not counts:
            return default
        best = max(counts.values())
        return next(c for c in CATEGORIES if counts.get(c) == best)
