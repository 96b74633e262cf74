// Every table of the report laid out for the printed page (lab.report.publish.write_pdf), in Chromium with print
// media at the width of an A4 page less its margins. A table wider than the page or its output area (what overflows
// that is not printed) is laid out again, in this order until it fits: its headers may wrap after "/" and "_"; a
// narrower form (tighter cells); split into stacked tables, each repeating the row headers (the setting) and
// keeping the table's data-csv. Nothing is clipped, hidden or made smaller. Returns, per table laid out again:
// {name, how, fits}.
width => {
  // a table's right edge may pass neither the page's nor its output area's
  const limit = table => Math.min(width, (table.closest('.jp-OutputArea-output') || table.parentElement)
                                          .getBoundingClientRect().right);
  const fits = table => {
    const box = table.getBoundingClientRect();
    if (box.right > limit(table) + 1 || box.left < -1) return false;
    return [...table.querySelectorAll('td, th')].every(cell => {
      const range = document.createRange();
      range.selectNodeContents(cell);
      return range.getBoundingClientRect().width <= cell.getBoundingClientRect().width + 1;
    });
  };
  const nameOf = table => table.getAttribute('data-csv') ||
    (table.classList.length ? `the ${table.classList[0]} table`
                            : `the table "${table.innerText.split('\n')[0].slice(0, 40)}"`);

  // headers may break after "/" and "_" ("batch/<wbr>process"), as well as at their spaces
  const wrapHeaders = table => {
    for (const th of table.querySelectorAll('thead th')) {
      const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT), nodes = [];
      for (let node = walker.nextNode(); node; node = walker.nextNode()) nodes.push(node);
      for (const node of nodes) {
        const pieces = node.data.split(/(?<=[\/_])/);
        if (pieces.length < 2) continue;
        const fragment = document.createDocumentFragment();
        pieces.forEach((piece, i) => {
          if (i) fragment.append(document.createElement('wbr'));
          fragment.append(piece);
        });
        node.replaceWith(fragment);
      }
    }
  };

  // each cell at the first column it covers, rowspans and colspans counted
  const grid = table => {
    const taken = [], cells = [];
    [...table.rows].forEach((row, r) => {
      let c = 0;
      for (const cell of row.cells) {
        while (taken[r] && taken[r][c]) c++;
        cells.push({cell, row: r, col: c, span: cell.colSpan, body: row.parentElement.tagName === 'TBODY'});
        for (let dr = 0; dr < cell.rowSpan; dr++)
          for (let dc = 0; dc < cell.colSpan; dc++) (taken[r + dr] = taken[r + dr] || [])[c + dc] = true;
        c += cell.colSpan;
      }
    });
    return cells;
  };

  // the table as stacked pieces, each the row headers and as many further columns as `budget` pixels hold
  const piecesOf = (table, budget) => {
    const cells = grid(table);
    const columns = Math.max(...cells.map(c => c.col + c.span));
    // the row headers: the leading columns where no body cell is a data cell (the setting); else the first column
    const data = new Set(cells.filter(c => c.body && c.cell.tagName === 'TD')
                              .flatMap(c => [...Array(c.span).keys()].map(k => c.col + k)));
    let keys = 0;
    while (keys < columns - 1 && !data.has(keys)) keys++;
    keys = Math.max(keys, 1);
    // a column's width: its cells' widths as squeezed now (a header's at its narrowest), or its body cells' text
    // on one line where that is wider (so a piece's values do not wrap where the page has room for them)
    const single = cells.filter(c => c.span === 1);
    const squeezed = single.map(c => c.cell.getBoundingClientRect().width);
    const body = single.filter(c => c.body);
    body.forEach(c => c.cell.style.setProperty('white-space', 'nowrap', 'important'));
    const oneLine = body.map(({cell}) => {
      const range = document.createRange(), style = getComputedStyle(cell);
      range.selectNodeContents(cell);
      return range.getBoundingClientRect().width + parseFloat(style.paddingLeft) + parseFloat(style.paddingRight) + 1;
    });
    body.forEach(c => c.cell.style.removeProperty('white-space'));
    const widthOf = col => Math.max(0, ...single.map((c, i) => c.col === col ? squeezed[i] : 0),
                                    ...body.map((c, i) => c.col === col ? oneLine[i] : 0));
    const keyWidth = [...Array(keys).keys()].reduce((sum, col) => sum + widthOf(col), 0);
    const groups = [[]];
    let used = keyWidth;
    for (let col = keys; col < columns; col++) {
      const w = widthOf(col);
      if (groups[groups.length - 1].length && used + w > budget) { groups.push([]); used = keyWidth; }
      groups[groups.length - 1].push(col);
      used += w;
    }
    const pieces = groups.map((group, i) => {
      const keep = new Set([...Array(keys).keys(), ...group]);
      const piece = table.cloneNode(true);
      for (const {cell, col, span} of grid(piece)) {
        const kept = [...Array(span).keys()].filter(k => keep.has(col + k)).length;
        if (kept) cell.colSpan = kept; else cell.remove();
      }
      let at = 0;  // a <col> covers `span` columns from where the one before it ended
      for (const col of [...piece.querySelectorAll(':scope > colgroup > col')]) {
        const kept = [...Array(col.span).keys()].filter(k => keep.has(at + k)).length;
        at += col.span;
        if (kept) col.span = kept; else col.remove();
      }
      const caption = piece.querySelector('caption');
      if (caption && i < groups.length - 1) caption.remove();  // the notes under the last piece
      piece.setAttribute('data-piece', `${i + 1}/${groups.length}`);
      const corner = piece.rows[0] && piece.rows[0].cells[0];
      if (i && corner && !corner.textContent.trim()) corner.textContent = '(continued)';
      return piece;
    });
    return {pieces, narrowest: groups.every(group => group.length <= 1)};
  };

  // split with a smaller budget each time until every piece fits (a piece of one column is as narrow as it gets)
  const split = table => {
    let budget = limit(table) - table.getBoundingClientRect().left - 4;
    for (let attempt = 0; ; attempt++) {
      const {pieces, narrowest} = piecesOf(table, budget);
      table.replaceWith(...pieces);
      if (pieces.every(fits) || narrowest || attempt >= 12) return pieces;
      pieces.slice(1).forEach(p => p.remove());
      pieces[0].replaceWith(table);
      budget *= 0.9;
    }
  };

  const laidOut = [];
  for (const table of [...document.querySelectorAll('table')]) {
    if (fits(table)) continue;
    const name = nameOf(table), how = ['headers wrapped'];
    wrapHeaders(table);
    let pieces = [table];
    if (!fits(table)) { table.classList.add('lab-narrow'); how.push('narrower cells'); }
    if (!fits(table)) pieces = split(table);
    if (pieces.length > 1) how.push(`split into ${pieces.length} stacked tables`);
    laidOut.push({name, how, fits: pieces.every(fits)});
  }
  return laidOut;
}
