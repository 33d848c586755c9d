#!/usr/bin/env python3
"""Lists the longest functions in Postern's sources (src/**/*.cpp, *.hpp), or, with
--max N, fails when one is longer than N lines. A function's length is the lines from its
signature's opening brace to its closing brace, lambdas inside it included.

    scripts/function_lengths.py            # the 20 longest, and each room's size
    scripts/function_lengths.py --max 100 --max-room 4000
                                           # exit 1, naming them, when a function is over
                                           # 100 lines or a room (src/<room>) over 4000
"""
import argparse
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def strip_comments_and_strings(text):
    """Same length and line breaks, with comments, strings and char literals blanked."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith('//', i):
            j = text.find('\n', i)
            j = n if j < 0 else j
            out.append(' ' * (j - i)); i = j
        elif text.startswith('/*', i):
            j = text.find('*/', i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c == 'R' and text.startswith('R"', i):
            m = re.match(r'R"([^(\s]*)\(', text[i:])
            if not m:
                out.append(c); i += 1; continue
            end = text.find(')' + m.group(1) + '"', i)
            j = n if end < 0 else end + len(m.group(1)) + 2
            out.append(re.sub(r'[^\n]', ' ', text[i:j])); i = j
        elif c in '"\'':
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == '\\' else 1
            j = min(j + 1, n)
            out.append(' ' * (j - i)); i = j
        else:
            out.append(c); i += 1
    return ''.join(out)


CONTAINER = re.compile(r'\b(namespace|class|struct|union|enum)\b[^;()]*$|extern\s*$')


def functions(path):
    text = strip_comments_and_strings(path.read_text())
    stack = []          # per open brace: 'container', 'function' or 'block'
    starts = []         # (line, name) per function brace on the stack
    head_start = 0      # where the text before the next brace begins
    for i, c in enumerate(text):
        if c == ';':
            head_start = i + 1
        elif c == '{':
            head = text[head_start:i]
            inside_function = 'function' in stack
            if inside_function:
                kind = 'block'
            elif CONTAINER.search(head.strip()) or '(' not in head or head.rstrip().endswith('='):
                kind = 'container' if not ('(' in head and not CONTAINER.search(head.strip())) else 'block'
            else:
                kind = 'function'
            stack.append(kind)
            if kind == 'function':
                m = re.search(r'([~\w:]+(?:operator\s*\S+?)?)\s*\([^{]*$', head, re.S)
                starts.append((text.count('\n', 0, i) + 1, m.group(1) if m else '?'))
            head_start = i + 1
        elif c == '}':
            kind = stack.pop() if stack else 'block'
            if kind == 'function':
                line, name = starts.pop()
                yield name, line, text.count('\n', 0, i) + 1 - line + 1
            head_start = i + 1


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--max', type=int)
    parser.add_argument('--max-room', type=int)
    parser.add_argument('--top', type=int, default=20)
    args = parser.parse_args()
    found = []
    for path in sorted((ROOT / 'src').rglob('*.[ch]pp')):
        for name, line, length in functions(path):
            found.append((length, f'{path.relative_to(ROOT)}:{line}', name))
    found.sort(reverse=True)
    rooms = {}
    for path in (ROOT / 'src').rglob('*.[ch]pp'):
        room = path.relative_to(ROOT / 'src').parts[0]
        rooms[room] = rooms.get(room, 0) + path.read_text().count('\n')
    if args.max is None and args.max_room is None:
        for length, where, name in found[:args.top]:
            print(f'{length:5d}  {where}  {name}')
        print()
        for room, lines in sorted(rooms.items(), key=lambda r: -r[1]):
            print(f'{lines:5d}  src/{room}')
        return 0
    over = [f for f in found if args.max is not None and f[0] > args.max]
    for length, where, name in over:
        print(f'{where}: {name} is {length} lines (limit {args.max})')
    big = [(r, n) for r, n in rooms.items() if args.max_room is not None and n > args.max_room]
    for room, lines in big:
        print(f'src/{room}: {lines} lines (limit {args.max_room}): split the room')
    return 1 if over or big else 0

if __name__ == '__main__':
    sys.exit(main())
