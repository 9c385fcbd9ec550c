"""sparsetrain train (being written)."""


def add_parser(sub):
    p = sub.add_parser("train", help="(being written)")
    p.set_defaults(func=lambda args: 0)
