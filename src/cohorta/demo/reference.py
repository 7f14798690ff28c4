"""Reference data of the demo generator: countries, cities, names, the product catalogue and event kinds.

Small hand-written tables; everything random is drawn from them by :mod:`cohorta.demo.generator`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


@dataclass(frozen=True)
class Country:
    code: str
    weight: float
    calling_code: str
    # (city, state or region, postal prefix)
    cities: tuple[tuple[str, str | None, str], ...]
    female: tuple[str, ...]
    male: tuple[str, ...]
    last: tuple[str, ...]
    domains: tuple[str, ...]
    mobile_prefixes: tuple[str, ...]
    national_digits: int


def postal_code(country: str, prefix: str, r: int) -> str:
    """A postal code in the country's format, starting with the city's prefix; ``r`` is a random integer."""
    if country == "PL":
        head = prefix + f"{r // 1000 % 100:02d}"[len(prefix):]
        return f"{head}-{r % 1000:03d}"
    if country in ("DE", "FR", "ES", "IT", "US"):
        return prefix + f"{r % 100000:05d}"[len(prefix):]
    if country == "GB":
        return f"{prefix}{r % 19 + 1} {r // 19 % 9 + 1}{LETTERS[r % 23]}{LETTERS[r // 23 % 23]}"
    if country == "NL":
        return f"{prefix}{r % 100:02d} {LETTERS[r % 23]}{LETTERS[r // 23 % 23]}"
    if country == "SE":
        return f"{prefix}{r % 10}{r // 10 % 10} {r // 100 % 100:02d}"
    if country == "IE":
        return f"{prefix} {LETTERS[r % 23]}{r // 23 % 1000:03d}"
    # Four-digit systems (AT, BE, CH, DK, NO) and the remaining five-digit ones (CZ, FI, LT, PT).
    width = 4 if country in ("AT", "BE", "CH", "DK", "NO", "PT") else 5
    code = prefix + f"{r % 10**width:0{width}d}"[len(prefix):]
    if country == "CZ":
        return f"{code[:3]} {code[3:]}"
    if country == "PT":
        return f"{code[:4]}-{r // 7 % 1000:03d}"
    if country == "LT":
        return f"LT-{code}"
    return code


COUNTRIES: tuple[Country, ...] = (
    Country("PL", 0.24, "48",
            (("Warszawa", "mazowieckie", "0"), ("Kraków", "małopolskie", "3"), ("Wrocław", "dolnośląskie", "5"),
             ("Gdańsk", "pomorskie", "80"), ("Poznań", "wielkopolskie", "6"), ("Łódź", "łódzkie", "9"),
             ("Katowice", "śląskie", "40"), ("Lublin", "lubelskie", "20"), ("Szczecin", "zachodniopomorskie", "7"),
             ("Białystok", "podlaskie", "15")),
            ("Anna", "Maria", "Katarzyna", "Małgorzata", "Agnieszka", "Zofia", "Julia", "Magdalena", "Ewa", "Natalia"),
            ("Piotr", "Krzysztof", "Andrzej", "Tomasz", "Paweł", "Jan", "Michał", "Jakub", "Marcin", "Łukasz"),
            ("Nowak", "Wójcik", "Kowalczyk", "Woźniak", "Mazur", "Krawczyk", "Kaczmarek", "Zając", "Król",
             "Wieczorek", "Wróbel", "Dudek", "Adamczyk", "Nowicki"),
            ("gmail.com", "wp.pl", "onet.pl", "o2.pl", "interia.pl"),
            ("50", "51", "53", "60", "66", "69", "72", "79"), 9),
    Country("DE", 0.18, "49",
            (("Berlin", "Berlin", "1"), ("Hamburg", "Hamburg", "2"), ("München", "Bayern", "8"),
             ("Köln", "Nordrhein-Westfalen", "50"), ("Frankfurt am Main", "Hessen", "60"),
             ("Stuttgart", "Baden-Württemberg", "70"), ("Düsseldorf", "Nordrhein-Westfalen", "40"),
             ("Leipzig", "Sachsen", "04"), ("Dresden", "Sachsen", "01"), ("Hannover", "Niedersachsen", "30")),
            ("Sophie", "Marie", "Anna", "Laura", "Julia", "Lena", "Katharina", "Sabine", "Petra", "Hannah"),
            ("Lukas", "Maximilian", "Thomas", "Michael", "Stefan", "Jonas", "Felix", "Andreas", "Paul", "Tobias"),
            ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker", "Schulz", "Hoffmann",
             "Koch", "Richter"),
            ("gmail.com", "web.de", "gmx.de", "t-online.de"), ("151", "152", "160", "170", "176", "179"), 11),
    Country("FR", 0.11, "33",
            (("Paris", "Île-de-France", "75"), ("Lyon", "Auvergne-Rhône-Alpes", "69"),
             ("Marseille", "Provence-Alpes-Côte d'Azur", "13"), ("Toulouse", "Occitanie", "31"),
             ("Bordeaux", "Nouvelle-Aquitaine", "33"), ("Lille", "Hauts-de-France", "59"),
             ("Nantes", "Pays de la Loire", "44"), ("Strasbourg", "Grand Est", "67")),
            ("Camille", "Léa", "Manon", "Chloé", "Emma", "Inès", "Sarah", "Julie", "Claire", "Louise"),
            ("Lucas", "Hugo", "Louis", "Gabriel", "Arthur", "Thomas", "Nicolas", "Julien", "Pierre", "Antoine"),
            ("Martin", "Bernard", "Dubois", "Thomas", "Robert", "Richard", "Petit", "Durand", "Leroy", "Moreau",
             "Simon", "Laurent"),
            ("gmail.com", "orange.fr", "free.fr", "laposte.net", "hotmail.fr"), ("6", "7"), 9),
    Country("GB", 0.10, "44",
            (("London", "England", "SW"), ("Manchester", "England", "M"), ("Birmingham", "England", "B"),
             ("Leeds", "England", "LS"), ("Glasgow", "Scotland", "G"), ("Edinburgh", "Scotland", "EH"),
             ("Bristol", "England", "BS"), ("Cardiff", "Wales", "CF"), ("Liverpool", "England", "L")),
            ("Olivia", "Amelia", "Emily", "Charlotte", "Sophie", "Jessica", "Grace", "Lucy", "Hannah", "Emma"),
            ("Oliver", "George", "Harry", "Jack", "James", "William", "Thomas", "Daniel", "Samuel", "Joshua"),
            ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
             "Evans", "Walker"),
            ("gmail.com", "hotmail.co.uk", "outlook.com", "yahoo.co.uk", "btinternet.com"), ("7",), 10),
    Country("ES", 0.07, "34",
            (("Madrid", "Comunidad de Madrid", "28"), ("Barcelona", "Cataluña", "08"),
             ("Valencia", "Comunitat Valenciana", "46"), ("Sevilla", "Andalucía", "41"), ("Bilbao", "País Vasco", "48"),
             ("Málaga", "Andalucía", "29"), ("Zaragoza", "Aragón", "50")),
            ("Lucía", "María", "Paula", "Laura", "Carmen", "Sofía", "Marta", "Elena", "Ana", "Isabel"),
            ("Hugo", "Daniel", "Pablo", "Alejandro", "Javier", "Carlos", "Manuel", "David", "Sergio", "Jorge"),
            ("García", "Fernández", "González", "Rodríguez", "López", "Martínez", "Sánchez", "Pérez", "Gómez",
             "Martín", "Ruiz", "Díaz"),
            ("gmail.com", "hotmail.es", "yahoo.es", "outlook.es"), ("6", "7"), 9),
    Country("IT", 0.07, "39",
            (("Roma", "Lazio", "00"), ("Milano", "Lombardia", "20"), ("Napoli", "Campania", "80"),
             ("Torino", "Piemonte", "10"), ("Bologna", "Emilia-Romagna", "40"), ("Firenze", "Toscana", "50"),
             ("Palermo", "Sicilia", "90")),
            ("Giulia", "Sofia", "Aurora", "Alice", "Chiara", "Francesca", "Martina", "Sara", "Elena", "Valentina"),
            ("Leonardo", "Francesco", "Alessandro", "Lorenzo", "Matteo", "Andrea", "Marco", "Luca", "Giuseppe",
             "Davide"),
            ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
             "Bruno", "Gallo"),
            ("gmail.com", "libero.it", "virgilio.it", "alice.it"), ("32", "33", "34", "36", "39"), 10),
    Country("NL", 0.05, "31",
            (("Amsterdam", "Noord-Holland", "10"), ("Rotterdam", "Zuid-Holland", "30"), ("Utrecht", "Utrecht", "35"),
             ("Den Haag", "Zuid-Holland", "25"), ("Eindhoven", "Noord-Brabant", "56"),
             ("Groningen", "Groningen", "97")),
            ("Emma", "Julia", "Sophie", "Anna", "Lotte", "Fleur", "Sanne", "Eva", "Lisa", "Iris"),
            ("Daan", "Sem", "Lucas", "Levi", "Thijs", "Jesse", "Bram", "Ruben", "Lars", "Niels"),
            ("de Jong", "Jansen", "de Vries", "van den Berg", "van Dijk", "Bakker", "Janssen", "Visser", "Smit",
             "Meijer"),
            ("gmail.com", "hotmail.nl", "ziggo.nl", "kpnmail.nl"), ("6",), 9),
    Country("SE", 0.04, "46",
            (("Stockholm", "Stockholms län", "11"), ("Göteborg", "Västra Götalands län", "41"),
             ("Malmö", "Skåne län", "21"), ("Uppsala", "Uppsala län", "75"), ("Linköping", "Östergötlands län", "58")),
            ("Alice", "Maja", "Elsa", "Astrid", "Wilma", "Ebba", "Saga", "Linnea", "Ingrid", "Karin"),
            ("William", "Liam", "Noah", "Hugo", "Lucas", "Oscar", "Erik", "Lars", "Anders", "Johan"),
            ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson", "Persson",
             "Svensson", "Gustafsson"),
            ("gmail.com", "hotmail.se", "telia.com", "outlook.com"), ("70", "72", "73", "76"), 9),
    Country("US", 0.06, "1",
            (("New York", "NY", "100"), ("Los Angeles", "CA", "900"), ("Chicago", "IL", "606"),
             ("Houston", "TX", "770"), ("Seattle", "WA", "981"), ("Boston", "MA", "021"), ("Miami", "FL", "331"),
             ("San Francisco", "CA", "941")),
            ("Olivia", "Emma", "Ava", "Sophia", "Isabella", "Mia", "Abigail", "Emily", "Madison", "Elizabeth"),
            ("Liam", "Noah", "James", "William", "Benjamin", "Michael", "Ethan", "Daniel", "Matthew", "Jacob"),
            ("Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Anderson", "Taylor",
             "Moore", "Clark"),
            ("gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com"),
            ("212", "310", "312", "617", "415"), 10),
    # The long tail.
    Country("CZ", 0.015, "420", (("Praha", "Hlavní město Praha", "1"), ("Brno", "Jihomoravský kraj", "6")),
            ("Tereza", "Eliška", "Jana", "Petra"), ("Jakub", "Jan", "Tomáš", "Petr"),
            ("Novák", "Svoboda", "Novotný", "Dvořák", "Černý"), ("seznam.cz", "gmail.com", "email.cz"),
            ("60", "72", "77"), 9),
    Country("AT", 0.012, "43", (("Wien", "Wien", "1"), ("Graz", "Steiermark", "80"), ("Linz", "Oberösterreich", "40")),
            ("Anna", "Lena", "Sarah", "Laura"), ("Lukas", "Tobias", "David", "Florian"),
            ("Gruber", "Huber", "Bauer", "Wagner", "Pichler"), ("gmx.at", "gmail.com", "aon.at"),
            ("650", "660", "664", "676"), 10),
    Country("BE", 0.01, "32", (("Bruxelles", "Bruxelles-Capitale", "10"), ("Antwerpen", "Antwerpen", "20"),
                               ("Gent", "Oost-Vlaanderen", "90")),
            ("Emma", "Louise", "Marie", "Elise"), ("Noah", "Arthur", "Louis", "Lucas"),
            ("Peeters", "Janssens", "Maes", "Jacobs", "Mertens"), ("gmail.com", "skynet.be", "telenet.be"),
            ("47", "48", "49"), 9),
    Country("PT", 0.008, "351", (("Lisboa", "Lisboa", "1"), ("Porto", "Porto", "4")),
            ("Maria", "Beatriz", "Ana", "Inês"), ("João", "Rodrigo", "Tiago", "Duarte"),
            ("Silva", "Santos", "Ferreira", "Pereira", "Oliveira"), ("gmail.com", "sapo.pt"), ("91", "93", "96"), 9),
    Country("IE", 0.008, "353", (("Dublin", "Leinster", "D02"), ("Cork", "Munster", "T12")),
            ("Emily", "Grace", "Aoife", "Siobhan"), ("Jack", "Conor", "Seán", "Cian"),
            ("Murphy", "Kelly", "O'Sullivan", "Walsh", "Byrne"), ("gmail.com", "eircom.net"), ("83", "85", "87"), 9),
    Country("DK", 0.007, "45", (("København", "Hovedstaden", "1"), ("Aarhus", "Midtjylland", "80")),
            ("Ida", "Freja", "Clara", "Emma"), ("William", "Oscar", "Carl", "Magnus"),
            ("Jensen", "Nielsen", "Hansen", "Pedersen", "Andersen"), ("gmail.com", "mail.dk"), ("2", "3", "4"), 8),
    Country("NO", 0.006, "47", (("Oslo", "Oslo", "0"), ("Bergen", "Vestland", "50")),
            ("Nora", "Emma", "Ingrid", "Sofie"), ("Jakob", "Emil", "Henrik", "Magnus"),
            ("Hansen", "Johansen", "Olsen", "Larsen", "Berg"), ("gmail.com", "online.no"), ("4", "9"), 8),
    Country("FI", 0.005, "358", (("Helsinki", "Uusimaa", "00"), ("Tampere", "Pirkanmaa", "33")),
            ("Aino", "Eevi", "Helmi", "Sofia"), ("Eino", "Onni", "Leo", "Mikko"),
            ("Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Mäkelä"), ("gmail.com", "luukku.com"), ("40", "50"), 9),
    Country("CH", 0.006, "41", (("Zürich", "Zürich", "80"), ("Genève", "Genève", "12"), ("Basel", "Basel-Stadt", "40")),
            ("Mia", "Emma", "Lea", "Laura"), ("Noah", "Luca", "Leon", "David"),
            ("Müller", "Meier", "Schmid", "Keller", "Weber"), ("gmail.com", "bluewin.ch"), ("76", "78", "79"), 9),
    Country("LT", 0.003, "370", (("Vilnius", "Vilniaus apskritis", "0"), ("Kaunas", "Kauno apskritis", "4")),
            ("Emilija", "Gabija", "Austėja", "Ugnė"), ("Jonas", "Lukas", "Matas", "Tomas"),
            ("Kazlauskas", "Jankauskas", "Petrauskas", "Stankevičius"), ("gmail.com", "inbox.lt"), ("6",), 8),
)


def ascii_slug(text: str) -> str:
    """Lower-case ASCII for e-mail local parts: 'Łukasz Woźniak' -> 'lukaszwozniak'."""
    text = text.replace("Ł", "L").replace("ł", "l").replace("ß", "ss").replace("ø", "o").replace("æ", "ae")
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in folded.lower() if ch.isalnum())


SOURCES = ("shopify", "mailchimp", "api", "pos")
SOURCE_WEIGHTS = (0.45, 0.2, 0.15, 0.2)
COMPANY_WORDS = ("Nordic", "Vistula", "Atlas", "Orion", "Baltic", "Alpine", "Meridian", "Lumen", "Cedar", "Harbor",
                 "Summit", "Pioneer", "Aurora", "Delta", "Granite")
COMPANY_SUFFIX = {"PL": "Sp. z o.o.", "DE": "GmbH", "AT": "GmbH", "CH": "AG", "FR": "SAS", "GB": "Ltd", "IE": "Ltd",
                  "ES": "S.L.", "IT": "S.r.l.", "NL": "B.V.", "BE": "BV", "SE": "AB", "US": "Inc.", "DK": "ApS",
                  "NO": "AS", "FI": "Oy", "CZ": "s.r.o.", "PT": "Lda", "LT": "UAB"}

OCCUPATIONS = ("engineer", "teacher", "nurse", "student", "designer", "accountant", "sales manager", "developer",
               "physician", "lawyer", "retired", "entrepreneur", "chef", "architect", "marketing specialist")
CLUB_LEVELS = ("standard", "plus", "vip")
INTERESTS = ("running", "yoga", "cooking", "travel", "photography", "gaming", "fashion", "gardening", "cycling",
             "music", "books", "home decor", "skincare", "outdoor", "tech")

# category: (brands, product nouns, median price in minor units)
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "shoes": (("Stride", "Nordpeak", "Urbanfoot"), ("running shoes", "sneakers", "boots", "sandals", "loafers"), 8900),
    "apparel": (("Linea", "Woolford", "Coastline"), ("t-shirt", "hoodie", "jeans", "jacket", "dress", "sweater"), 4900),
    "beauty": (("Glowé", "Purelab", "Verdana"), ("face cream", "serum", "lipstick", "shampoo", "perfume"), 2900),
    "home": (("Hygge & Co", "Casa Nova", "Birchwood"), ("candle", "throw blanket", "vase", "cushion", "lamp"), 3900),
    "kitchen": (("Cucina", "Ironleaf", "Kitchenista"), ("chef's knife", "frying pan", "coffee grinder", "teapot"),
                5900),
    "electronics": (("Voltra", "Sonique", "Pixelon"), ("headphones", "smartwatch", "speaker", "e-reader", "charger"),
                    12900),
    "sports": (("Peakform", "Aquaflex", "Trailhead"), ("yoga mat", "dumbbells", "tennis racket", "backpack"), 4500),
    "toys": (("Brickly", "Playwise", "Tinytown"), ("building set", "puzzle", "plush bear", "board game"), 2900),
    "books": (("Papertrail", "Inkwell"), ("novel", "cookbook", "travel guide", "children's book"), 1900),
    "grocery": (("Green Valley", "Bottega"), ("coffee beans", "olive oil", "dark chocolate", "green tea"), 1200),
}
ADJECTIVES = ("Classic", "Premium", "Eco", "Essential", "Pro", "Soft", "Urban", "Deluxe", "Light", "Everyday")


@dataclass(frozen=True)
class Catalogue:
    sku: np.ndarray  # object arrays, one entry per product
    name: np.ndarray
    category: np.ndarray
    brand: np.ndarray
    price_minor: np.ndarray  # int64
    popularity: np.ndarray  # float64, sums to 1


def build_catalogue(rng: np.random.Generator, size: int = 500) -> Catalogue:
    names = list(CATEGORIES)
    cat_idx = rng.integers(0, len(names), size)
    skus, titles, cats, brands, prices = [], [], [], [], []
    for i, ci in enumerate(cat_idx):
        brand_list, nouns, median = CATEGORIES[names[ci]]
        brand = brand_list[rng.integers(len(brand_list))]
        title = f"{brand} {ADJECTIVES[rng.integers(len(ADJECTIVES))]} {nouns[rng.integers(len(nouns))]}"
        price = round(median * rng.lognormal(0.0, 0.45) / 100.0) * 100 - 1  # x.99 prices
        skus.append(f"SKU-{i + 1:05d}")
        titles.append(title)
        cats.append(names[ci])
        brands.append(brand)
        prices.append(max(price, 199))
    popularity = 1.0 / np.arange(1, size + 1) ** 0.9  # Zipf-like: a few best sellers
    popularity = popularity[rng.permutation(size)]
    return Catalogue(
        sku=np.array(skus, dtype=object), name=np.array(titles, dtype=object), category=np.array(cats, dtype=object),
        brand=np.array(brands, dtype=object), price_minor=np.array(prices, dtype=np.int64),
        popularity=popularity / popularity.sum(),
    )


# Event kinds: (name, weight, label, declared properties)
EVENT_KINDS: tuple[tuple[str, float, str, dict[str, str]], ...] = (
    ("page_viewed", 0.30, "Page viewed", {"path": "string"}),
    ("product_viewed", 0.20, "Product viewed", {"category": "string", "price": "number"}),
    ("added_to_cart", 0.07, "Added to cart", {"sku": "string", "price": "number"}),
    ("checkout_started", 0.03, "Checkout started", {"cart_value": "number"}),
    ("newsletter_opened", 0.12, "Newsletter opened", {"campaign": "string"}),
    ("newsletter_clicked", 0.04, "Newsletter clicked", {"campaign": "string"}),
    ("app_opened", 0.10, "App opened", {"platform": "string"}),
    ("search", 0.07, "Search", {"query": "string"}),
    ("review_written", 0.01, "Review written", {"rating": "number"}),
    ("wishlist_added", 0.03, "Added to wishlist", {"category": "string"}),
    ("store_visit", 0.02, "Store visit", {"store": "string"}),
    ("coupon_redeemed", 0.01, "Coupon redeemed", {"code": "string"}),
)
PAGES = ("/", "/new-arrivals", "/sale", "/account", "/stores", "/blog", "/help", "/cart", "/club")
CAMPAIGNS = ("spring-sale", "summer-drop", "back-to-school", "black-friday", "xmas-gifts", "club-news", "welcome")
PLATFORMS = ("ios", "android")
COUPONS = ("WELCOME10", "CLUB15", "SUMMER20", "BF25", "FREESHIP")
REWARDS = ("EUR 5 voucher", "EUR 10 voucher", "free shipping", "tote bag", "double points day")
