"""The vocabulary of the story world: every word a story can use, grouped by the slot it fills.

Each list fills one kind of slot in the grammar (minilm/data/stories.py). Lists are disjoint where
two slots stand next to each other, so a text can always be split back into its choices. The part
of speech of each word (noun, adjective, verb) drives the word-order rule of the made-up language
(minilm/data/language.py). About four hundred distinct words in all.
"""

NAMES = ("Mia", "Tom", "Lily", "Ben", "Zoe", "Max", "Anna", "Sam", "Ella", "Leo", "Ruby", "Jack",
         "Nora", "Finn", "Ivy", "Owen", "Lucy", "Hugo", "Rosa", "Theo", "Maya", "Eli", "Alma", "Kai",
         "Ada", "Noah", "Iris", "Omar", "Lena", "Ravi", "Nina", "Otto", "Jade", "Luca", "Emma", "Ezra",
         "Lola", "Milo", "Sara", "Yuki")

WORDS = {
    # who the characters are
    "names": NAMES,
    "kinds": ("girl", "boy", "cat", "dog", "fox", "rabbit", "bear", "owl", "mouse", "duck", "frog",
              "hen", "pig", "deer", "lion", "wolf", "horse", "turtle", "puppy", "kitten", "goose", "sheep",
              "tiger", "panda"),
    "traits": ("brave", "shy", "curious", "kind", "clever", "quiet", "gentle", "bold", "silly",
               "little", "young", "old", "busy", "lazy", "funny", "polite", "honest", "sleepy",
               "tiny", "friendly", "careful", "playful", "grumpy", "wise"),
    # where they live
    "openings": ("Once upon a time", "Long ago", "Once", "Years ago", "Back then", "Not long ago",
                 "In the old days", "Some time ago"),
    "place_adjectives": ("small", "big", "green", "quiet", "sunny", "snowy", "windy", "busy",
                         "sleepy", "pretty", "hidden", "distant"),
    "places": ("village", "forest", "town", "castle", "garden", "farm", "city", "valley", "meadow",
               "cottage", "tower", "cave", "house", "harbor", "jungle", "orchard", "palace", "barn",
               "swamp", "desert"),
    "namings": ("named", "called"),
    "friendships": ("had a friend,", "often played with", "liked to visit", "lived next to"),
    # the thing they find
    "times": ("morning", "afternoon", "evening", "night", "day", "weekend", "spring", "winter"),
    "find_verbs": ("found", "saw", "made", "got", "bought", "won", "drew", "built"),
    "colors": ("red", "blue", "green", "yellow", "white", "black", "pink", "purple", "orange",
               "silver", "golden", "brown"),
    "objects": ("kite", "ball", "key", "hat", "box", "map", "boat", "lamp", "book", "drum", "shell",
                "ring", "cup", "flute", "scarf", "bell", "bike", "coin", "kettle", "clock", "wagon",
                "basket", "sled", "whistle", "fan", "mirror", "pillow", "candle", "jar", "puzzle", "robot",
                "doll"),
    "wheres": ("near the river", "under a tree", "behind the house", "in the grass", "on the hill",
               "by the old well", "at the market", "in the sand", "next to the road",
               "under the bridge", "on the beach", "in a puddle", "behind a rock", "in the attic",
               "under the bed", "by the gate"),
    "qualities": ("small", "big", "shiny", "soft", "heavy", "light", "old", "new", "round", "bright",
                  "warm", "strange", "smooth", "dusty", "noisy", "tiny"),
    # what they do with it
    "adverbs": ("slowly", "quickly", "happily", "proudly", "carefully", "quietly", "gladly",
                "bravely", "gently", "eagerly", "softly", "calmly", "boldly", "warmly", "politely",
                "kindly"),
    "carry_verbs": ("carried", "took", "brought", "pulled"),
    "landmarks": ("river", "lake", "hill", "bridge", "tower", "market", "beach", "pond", "mill",
                  "school", "park", "well", "fountain", "library", "bakery", "station"),
    "play_verbs": ("played", "sang", "danced", "rested", "laughed", "read", "painted", "talked"),
    "until_times": ("noon", "dark", "sunset", "lunch", "supper", "midnight", "dinner", "bedtime"),
    # the trouble
    "fall_verbs": ("fell", "slipped", "dropped", "tumbled"),
    "pieces": ("two", "three", "four", "many"),
    "weathers": ("a strong wind", "a big storm", "a cold gust", "a wild wave"),
    "thief_adjectives": ("hungry", "sneaky", "greedy", "naughty", "cheeky", "wild"),
    "thieves": ("crow", "monkey", "goat", "squirrel", "raccoon", "magpie", "seagull", "weasel"),
    "grab_verbs": ("took", "grabbed", "stole", "snatched"),
    "share_verbs": ("wanted", "decided", "hoped", "promised"),
    # how it turns out
    "searches": ("everywhere", "all day", "for hours", "until dark"),
    "tools": ("glue", "tape", "string", "nails", "wire", "thread"),
    "catches": ("just in time", "at the last moment", "by the fence", "near the pond"),
    "flights": ("over the hills", "far away", "into the sea", "above the clouds"),
    "thanks": ("smiled", "laughed", "clapped", "cheered"),
    "refusals": ("said no", "was too busy", "walked away", "looked away"),
    # the ending
    "ending_openers": ("In the end", "That night", "After that", "From then on"),
    "happy_words": ("happy", "glad", "proud", "cheerful"),
    "sad_words": ("sad", "upset", "lonely", "gloomy"),
    "happy_reactions": ("smiled", "laughed", "sang", "cheered"),
    "sad_reactions": ("sighed", "cried", "frowned", "stayed quiet"),
}

# The fixed words of the grammar's sentence templates (minilm/data/stories.py).
TEMPLATE_WORDS = tuple("""
    lived in one the was and they to showed at until but then lost helped found it searched gone
    suddenly broke into pieces fixed with tried no use carried away ran after caught flew later
    chased got back share played alone felt a an
""".split())

# Parts of speech for the made-up language's word-order rule.
NOUNS = frozenset(WORDS["kinds"] + WORDS["places"] + WORDS["objects"] + WORDS["landmarks"]
                  + WORDS["thieves"] + WORDS["tools"] + (
                      "friend", "tree", "house", "grass", "well", "sand", "road", "puddle", "rock",
                      "attic", "bed", "gate", "wind", "storm", "gust", "wave", "pieces", "hills",
                      "sea", "clouds", "fence", "moment", "time", "day", "morning", "afternoon",
                      "evening", "night", "weekend", "spring", "winter", "days"))
ADJECTIVES = frozenset(WORDS["traits"] + WORDS["place_adjectives"] + WORDS["colors"]
                       + WORDS["qualities"] + WORDS["thief_adjectives"] + WORDS["happy_words"]
                       + WORDS["sad_words"] + ("strong", "cold", "last", "good", "new", "gone"))
VERBS = frozenset(WORDS["find_verbs"] + WORDS["carry_verbs"] + WORDS["play_verbs"]
                  + WORDS["fall_verbs"] + WORDS["grab_verbs"] + WORDS["share_verbs"]
                  + WORDS["thanks"] + WORDS["happy_reactions"] + (
                      "lived", "had", "visited", "was", "showed", "lost", "broke", "helped", "fixed",
                      "tried", "ran", "caught", "flew", "chased", "searched", "felt", "sighed",
                      "cried", "frowned", "stayed", "said", "walked", "looked", "played", "seen",
                      "carried"))
ARTICLES = frozenset({"a", "an", "the"})
