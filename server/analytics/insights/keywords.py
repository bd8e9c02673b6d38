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
    "Arts & Culture": (
        "artists exhibit painted museo exposición arte poeta escritor "
        "ζωγραφική έκθεση θέατρο ποιητής アート 芸術 美術館 博物館 写真展 art artist "
        "artwork painting painter drawing museum gallery exhibition "
        "poetry poem novel book books author literature theatre theater "
        "history photography sculpture pintura libro libros poesía "
        "literatura τέχνη βιβλίο μουσείο ποίηση 美術 絵画 展覧会 小説 読書"
    ),
    "Business & Finance": (
        "stocks shares profit revenue earnings inflation prices bolsa "
        "acciones inversión precios inflación εταιρεία χρηματιστήριο "
        "επενδύσεις μετοχές πληθωρισμός 売上 決算 円安 会社 business market "
        "markets stock economy startup ceo company companies investor "
        "investors investing invest finance financial bitcoin crypto bank "
        "money sales marketing entrepreneur jobs hiring empresa economía "
        "mercado dinero banco negocio negocios οικονομία επιχείρηση "
        "τράπεζα 経済 株価 投資 ビジネス 企業"
    ),
    "Daily Life": (
        "today tonight morning tired sleep bored weekend monday mood "
        "feeling feel lol hoy mañana dormir cansado σήμερα καλημέρα "
        "κουρασμένος 今日 眠い 朝"
    ),
    "Education": (
        "teachers students graduation graduate campus semester homework "
        "maestro profesor alumnos estudiar clases δάσκαλος φοιτητές "
        "μάθημα σπουδές 先生 生徒 学生 受験 卒業 school college university student "
        "teacher class exam exams learn learning study studying lecture "
        "course escuela universidad estudiantes examen clase σχολείο "
        "πανεπιστήμιο μαθητές εξετάσεις 学校 大学 勉強 試験 授業"
    ),
    "Entertainment": (
        "tv anime streaming premiere hbo disney marvel oscar actors "
        "celebrities famous televisión estreno actriz famosos tele "
        "ταινίες τηλεόραση επεισόδιο ηθοποιοί 映画館 番組 テレビ 声優 女優 movie "
        "movies film films series episode netflix actor actress celebrity "
        "hollywood oscars trailer cinema show película películas serie "
        "cine ταινία σειρά σινεμά ηθοποιός 映画 ドラマ アニメ 俳優 芸能"
    ),
    "Family & Relationships": (
        "children parents sister brother grandma grandpa couple "
        "relationship hermana hermano padres niños abuela pareja αδερφή "
        "αδερφός γονείς γιαγιά σχέση 息子 娘 夫 妻 恋人 mom mum dad mother "
        "father son daughter baby kids family husband wife boyfriend "
        "girlfriend wedding love friend friends marriage dating mamá papá "
        "hijo hija familia novio novia amigos boda μαμά μπαμπάς "
        "οικογένεια παιδιά φίλοι γάμος 家族 子供 母 父 彼氏 彼女 結婚 友達"
    ),
    "Fashion & Beauty": (
        "jeans sneakers jacket lipstick perfume hairstyle zapatos "
        "chaqueta φόρεμα παπούτσια άρωμα 服 コスメ 香水 ネイル fashion style "
        "outfit dress dresses shoes makeup skincare beauty hair nails "
        "model vogue wear moda ropa vestido maquillaje belleza μόδα ρούχα "
        "μακιγιάζ ファッション コーデ メイク 化粧"
    ),
    "Food & Drink": (
        "coffee tea bread pasta sushi tacos chef cocinar desayuno café "
        "pan καφές ψωμί γλυκό σουβλάκι 食べ 寿司 カフェ ケーキ 飲み food eat eating "
        "dinner lunch breakfast recipe cooking cook pizza burger "
        "restaurant delicious chocolate cake wine beer drink comida cena "
        "almuerzo receta restaurante cerveza φαγητό συνταγή εστιατόριο "
        "μαγειρική ご飯 料理 ランチ ラーメン 美味しい"
    ),
    "Gaming": (
        "gameplay console pokemon zelda mario callofduty valorant jugar "
        "consola partida gamers παιχνίδια κονσόλα ポケモン ゲーム実況 スプラ 配信 game "
        "games gaming gamer xbox playstation ps4 ps5 nintendo switch "
        "fortnite minecraft twitch esports steam videojuego videojuegos "
        "παιχνίδι ゲーム 任天堂 プレステ"
    ),
    "Health & Fitness": (
        "training marathon calories vaccine vaccinated covid19 pandemic "
        "virus salud dieta entrenamiento pandemia γυμναστήριο διατροφή "
        "πανδημία κορωνοϊός ジム 運動 コロナ 感染 health healthy fitness workout "
        "gym exercise run running yoga diet weight doctor hospital covid "
        "mental ejercicio gimnasio vacuna médico υγεία γυμναστική εμβόλιο "
        "γιατρός 健康 筋トレ ダイエット 病院 ワクチン"
    ),
    "Music": (
        "songs singer concert dj rap kpop bts album musica canciones "
        "banda grupo τραγουδιστής δίσκος μουσικής 歌手 新曲 コンサート バンド music "
        "song single tour band rapper spotify playlist guitar música "
        "canción concierto disco cantante μουσική τραγούδι συναυλία 音楽 曲 "
        "ライブ アルバム 歌"
    ),
    "News & Politics": (
        "minister parliament democracy rights protest protests justice "
        "court vote voting ministro congreso derechos protesta justicia "
        "βουλή υπουργός δικαιοσύνη διαμαρτυρία κόμμα 国会 大臣 裁判 デモ 事件 news "
        "president government election elections trump biden obama "
        "congress senate police war law politics political party noticias "
        "gobierno elecciones presidente política policía guerra ειδήσεις "
        "κυβέρνηση εκλογές πρωθυπουργός πολιτική αστυνομία ニュース 政府 選挙 首相 "
        "政治 警察"
    ),
    "Science & Technology": (
        "phone smartphone laptop software hardware update iphone samsung "
        "tesla spacex móvil celular tecnologia κινητό εφαρμογή λογισμικό "
        "ロボット 宇宙 研究 tech technology apple android google microsoft app ai "
        "computer internet science scientists research space nasa data "
        "robot tecnología ciencia ordenador τεχνολογία επιστήμη "
        "υπολογιστής 科学 技術 スマホ アプリ パソコン"
    ),
    "Sports": (
        "nba nfl fifa worldcup olympics athlete athletes stadium playoff "
        "playoffs tournament goalkeeper jugador estadio torneo campeón "
        "ποδοσφαιριστής γήπεδο πρωτάθλημα ολυμπιακός παναθηναϊκός 監督 優勝 "
        "ゴール 五輪 football soccer mlb nhl basketball baseball tennis golf "
        "cricket match goal team league champions player coach fútbol "
        "partido gol equipo liga ποδόσφαιρο αγώνας γκολ ομάδα μπάσκετ 野球 "
        "サッカー 試合 選手"
    ),
    "Travel": (
        "traveling travelling tourist passport island roadtrip "
        "backpacking turismo isla montaña viajar τουρισμός νησί βουνό "
        "ταξίδια 旅 温泉 観光地 travel trip vacation holiday holidays flight "
        "airport hotel beach tourism adventure hiking mountains viaje "
        "vacaciones vuelo playa ταξίδι διακοπές παραλία ξενοδοχείο 旅行 観光 "
        "ホテル 空港"
    ),
    "Other": (
        "cats dogs puppy plants camping fishing coleccion perro gato "
        "mascotas σκύλος γάτα κατοικίδια 猫 犬 ペット 手芸 hobby hobbies garden "
        "gardening knitting collecting diy crafts pets jardín pesca κήπος "
        "ψάρεμα 趣味 釣り"
    ),
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
