#ifndef PARLEY_CNCURSESW_SHIM_H
#define PARLEY_CNCURSESW_SHIM_H

/* Wide-character API (cchar_t, add_wch, get_wch, wcwidth) needs these before
 * any system header. */
#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#ifndef NCURSES_WIDECHAR
#define NCURSES_WIDECHAR 1
#endif

#include <locale.h>
#include <wchar.h>
#include <ncursesw/curses.h>

/* Macros Swift cannot import, wrapped as functions. */

static inline int parley_color_pair(int n) { return (int)COLOR_PAIR(n); }
static inline int parley_getmaxy(WINDOW *w) { return getmaxy(w); }
static inline int parley_getmaxx(WINDOW *w) { return getmaxx(w); }
static inline int parley_getcury(WINDOW *w) { return getcury(w); }
static inline int parley_getcurx(WINDOW *w) { return getcurx(w); }
static inline WINDOW *parley_stdscr(void) { return stdscr; }
static inline int parley_lines(void) { return LINES; }
static inline int parley_cols(void) { return COLS; }
static inline int parley_colors(void) { return COLORS; }
static inline int parley_key_resize(void) { return KEY_RESIZE; }
static inline int parley_key_f(int n) { return KEY_F(n); }
static inline int parley_key_mouse(void) { return KEY_MOUSE; }
static inline unsigned long parley_a_bold(void) { return A_BOLD; }
static inline unsigned long parley_a_reverse(void) { return A_REVERSE; }
static inline unsigned long parley_a_dim(void) { return A_DIM; }
static inline unsigned long parley_a_underline(void) { return A_UNDERLINE; }
static inline unsigned long parley_a_normal(void) { return A_NORMAL; }

/* setcchar with a single wide character and attributes. */
static inline int parley_setcchar(cchar_t *cell, wchar_t ch, attr_t attrs, short pair) {
    wchar_t text[2] = { ch, 0 };
    return setcchar(cell, text, attrs, pair, NULL);
}

/* setcchar with a base character and its combining marks (a NUL-terminated string). */
static inline int parley_setcchar_text(cchar_t *cell, const wchar_t *text, attr_t attrs, short pair) {
    return setcchar(cell, text, attrs, pair, NULL);
}

/* Mouse masks (macros built from NCURSES_MOUSE_MASK). */
static inline mmask_t parley_button1_pressed(void) { return BUTTON1_PRESSED; }
static inline mmask_t parley_button1_released(void) { return BUTTON1_RELEASED; }
static inline mmask_t parley_button1_clicked(void) { return BUTTON1_CLICKED; }
static inline mmask_t parley_button4_pressed(void) { return BUTTON4_PRESSED; }
static inline mmask_t parley_button5_pressed(void) { return BUTTON5_PRESSED; }

/* The display width ncurses itself uses for a code point (-1 for non-printable). */
static inline int parley_wcwidth(unsigned int codepoint) { return wcwidth((wchar_t)codepoint); }

#endif
