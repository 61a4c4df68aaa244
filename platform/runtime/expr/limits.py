"""Cost bounds. Every expression is small, shallow and cheap by construction; these say how small."""
from decimal import Decimal

MAX_SOURCE_LENGTH = 4000        # characters of source
MAX_DEPTH = 40                  # nesting of the syntax tree
MAX_NODES = 400                 # nodes of the syntax tree (after inlining other formulas)
MAX_STRING_LENGTH = 10_000      # characters of any string literal or produced string
MAX_LITERAL_DIGITS = 18         # digits of a number literal
MAX_MAGNITUDE = Decimal(10) ** 18  # |number| must stay below this during evaluation
MAX_STEPS = 5_000               # evaluation steps (node visits) per evaluate()
MAX_FORMULA_NESTING = 5         # formula referring to formula referring to ...
