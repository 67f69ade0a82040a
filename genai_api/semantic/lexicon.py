"""The guard's word lists (`genai_api.semantic.guard`): data, kept apart from the rules.

Every list is closed and small on purpose: a word missing here makes the guard let a pair
through to the similarity threshold, never refuse it, except in `STOPWORDS` (a content word
listed there would drop out of the order check). Inflections are listed, not stemmed, so
"times" (multiplied) is not "time".
"""

from __future__ import annotations

NUMBER_WORDS = {
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "eleven": "11",
    "twelve": "12",
    "twenty": "20",
    "hundred": "100",
    "thousand": "1000",
    "million": "1000000",
    "billion": "1000000000",
    "twice": "2",
    "double": "2",
    "half": "0.5",
    "dozen": "12",
    "second": "2",
    "third": "3",
    "ii": "2",
    "iii": "3",
    "iv": "4",
}  # "one" and "first" are left out: "a" and "an" say one as often
NEGATIONS = frozenset(
    "not no never none nothing nobody neither nor without cannot isn't aren't wasn't "
    "weren't don't doesn't didn't can't couldn't won't wouldn't shouldn't mustn't haven't "
    "hasn't hadn't".split()
)
# (class, pole) for words whose opposite changes the answer; synonyms share a pole.
_POLAR = (
    (
        "toggle",
        "enable enabled enabling activate activated",
        "disable disabled disabling deactivate deactivated",
    ),
    (
        "run",
        "start starts started starting begin begins began launch",
        "stop stops stopped stopping end ends ended finish kill halt",
    ),
    (
        "size",
        "increase raise enlarge bigger larger grow more greater",
        "decrease reduce lower shrink smaller less fewer",
    ),
    ("extreme", "max maximum largest highest most biggest", "min minimum smallest lowest least"),
    ("sort", "ascending asc increasing", "descending desc decreasing"),
    ("time", "before earlier prior", "after later"),
    ("edit", "add adding insert append create creating", "remove removing delete deleting drop"),
    ("transfer", "upload uploading push", "download downloading pull"),
    (
        "code",
        "encrypt encrypting encode encoding compress compressing serialize zip",
        "decrypt decrypting decode decoding decompress extract unzip deserialize",
    ),
    ("setup", "install installing", "uninstall uninstalling"),
    ("io", "import", "export"),
    ("rw", "read reading load loading", "write writing"),
    ("view", "show display", "hide"),
    ("lock", "lock locked", "unlock unlocked"),
    ("open", "open opening", "close closing closed"),
    ("ns", "north northern", "south southern"),
    ("ew", "east eastern", "west western"),
    ("ends", "first", "last"),
    ("case", "uppercase upper capitalize", "lowercase lower"),
    ("age", "older", "younger"),
    ("weight", "heavier", "lighter"),
    ("speed", "faster", "slower"),
    ("axis", "horizontally horizontal", "vertically vertical"),
    ("hard", "hard", "soft"),
    ("cooked", "cooked", "raw"),
    ("truth", "true", "false"),
    ("sign", "signed", "unsigned"),
    ("heat", "hot warm", "cold cool iced"),
    ("arith", "plus sum", "minus subtract"),
    ("product", "times multiplied multiply", "divided divide"),
    ("calc", "derivative differentiate", "integral integrate"),
    ("day", "morning", "night evening"),
    ("join", "left", "inner"),
    ("pass", "byvalue", "byreference"),
    ("keep", "keep keeping preserve retain", "discard discarding lose losing"),
)
POLES: dict[str, tuple[str, int]] = {
    word: (cls, pole)
    for cls, plus, minus in reversed(_POLAR)  # a word listed twice keeps its first class
    for pole, words in ((1, plus), (-1, minus))
    for word in words.split()
}
# Units, by what they measure: a unit in one prompt must be the same unit in the other.
_UNITS = (
    ("tsp", "teaspoon tsp"),
    ("tbsp", "tablespoon tbsp"),
    ("cup", "cup"),
    ("l", "liter litre l"),
    ("ml", "milliliter millilitre ml"),
    ("gal", "gallon"),
    ("qt", "quart"),
    ("pt", "pint"),
    ("floz", "ounce oz"),
    ("g", "gram g"),
    ("kg", "kilogram kilo kg"),
    ("lb", "pound lb"),
    ("t", "ton tonne"),
    ("m", "meter metre"),
    ("km", "kilometer kilometre km"),
    ("mi", "mile"),
    ("ft", "foot feet ft"),
    ("in", "inch"),
    ("cm", "centimeter centimetre cm"),
    ("mm", "millimeter millimetre mm"),
    ("yd", "yard"),
    ("degc", "celsius centigrade"),
    ("degf", "fahrenheit"),
    ("k", "kelvin"),
    ("mph", "mph"),
    ("kmh", "kph kmh"),
    ("usd", "dollar usd"),
    ("eur", "euro eur"),
    ("gbp", "gbp sterling"),
    ("jpy", "yen jpy"),
    ("w", "watt"),
    ("kwh", "kwh"),
    ("byte", "byte"),
    ("kb", "kilobyte kb"),
    ("mb", "megabyte mb"),
    ("gb", "gigabyte gb"),
    ("bit", "bit"),
    ("pct", "percent percentage"),
)
UNITS: dict[str, str] = {word: unit for unit, words in _UNITS for word in words.split()}
# The question asked: "who wrote 1984" and "when was 1984 written" share every other word.
ASKS = {"who": "who", "whom": "who", "whose": "who", "when": "when", "where": "where", "why": "why"}
PHRASES = {
    "turn on": "enable",
    "switch on": "enable",
    "turn off": "disable",
    "switch off": "disable",
    "miles per hour": "mph",
    "kilometers per hour": "kmh",
    "%": " percent ",
    "by value": "byvalue",
    "by reference": "byreference",
    "come before": "before",
    "come after": "after",
    "more than": "greater",
    "less than": "less",
}
STOPWORDS = frozenset(
    "a an the i me my we our you your he she it its they them their this that these those "
    "is are was were be been being am do does did doing have has had having can could "
    "should would will shall may might must what which who whom whose when where why how "
    "to of in on at by for with from into onto about as than then so and or but if "
    "please way best good right there here get make give tell using use used any some "
    "all each every one very just also s it's what's i'm".split()
)
CONTEXT = frozenset("in on with using for at during while per via".split())
DETERMINERS = frozenset("a an the my your our their this that".split())
COORDINATORS = frozenset("and or vs versus".split())
RELATIONS = frozenset("to into from than by of".split())
LANGUAGES = {
    "fr": frozenset("le la les de des du est une un et quelle quel comment pour avec".split()),
    "es": frozenset("el la los las de del es una un y cómo qué para con por".split()),
    "pt": frozenset("o a os as de do da é um uma e como em para com".split()),
    "de": frozenset("der die das ist ein eine und wie was für mit von nicht".split()),
    "it": frozenset("il lo la gli le di è un una e come che per con".split()),
}
