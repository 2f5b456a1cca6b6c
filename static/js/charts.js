// ArbionTrader charts: every element with data-chart draws the JSON at its data-url (our own origin).
// Amounts arrive as decimal strings; they become numbers here only to be drawn.
(function () {
  "use strict";

  var COLORS = { line: "#0b5cad", ok: "#1b7f3b", bad: "#b3261e", entry: "#0b5cad", stop: "#b3261e", take_profit: "#1b7f3b" };
  var LEVEL_TITLES = { entry: "Entry", stop: "Stop", take_profit: "Take-profit" };

  function statusOf(element) {
    return document.querySelector('[data-chart-status="' + element.id + '"]');
  }

  function say(element, text) {
    var status = statusOf(element);
    if (status) {
      status.textContent = text;
      status.hidden = !text;
    }
  }

  function load(element) {
    say(element, "Loading chart…");
    return fetch(element.getAttribute("data-url"), {
      headers: { Accept: "application/json" },
      credentials: "same-origin",
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var message = body && body.error && body.error.message ? body.error.message : "HTTP " + response.status;
          throw new Error(message);
        }
        return body;
      });
    });
  }

  function shortTime(iso) {
    var date = new Date(iso);
    return date.toISOString().slice(5, 16).replace("T", " ");
  }

  function drawEquity(element, body) {
    if (!body.points.length) {
      say(element, "No equity snapshots yet: they are taken every few minutes while an account is connected.");
      return false;
    }
    new window.Chart(element, {
      type: "line",
      data: {
        labels: body.points.map(function (point) { return shortTime(point.time) + " UTC"; }),
        datasets: [{
          label: "Equity (" + body.currency + ")",
          data: body.points.map(function (point) { return Number(point.equity); }),
          borderColor: COLORS.line,
          pointRadius: 0,
          tension: 0.1,
        }],
      },
      options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } } },
    });
    say(element, "");
    return true;
  }

  function drawDailyPnl(element, body) {
    if (!body.days.length) {
      say(element, "No trades closed in the last 30 days.");
      return false;
    }
    var values = body.days.map(function (day) { return Number(day.realized_pnl); });
    new window.Chart(element, {
      type: "bar",
      data: {
        labels: body.days.map(function (day) { return day.day; }),
        datasets: [{
          label: "Realized P&L (" + body.currency + ")",
          data: values,
          backgroundColor: values.map(function (value) { return value >= 0 ? COLORS.ok : COLORS.bad; }),
        }],
      },
      options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false } } },
    });
    say(element, "");
    return true;
  }

  function drawPrice(element, body) {
    if (!body.candles.length) {
      say(element, "No price history for " + body.symbol + " at this broker right now.");
      return false;
    }
    var charts = window.LightweightCharts;
    // The logo on the chart would need an inline <style> (refused by our CSP): the page carries
    // the TradingView attribution and link instead, as the licence's NOTICE asks.
    var chart = charts.createChart(element, { autoSize: true, layout: { attributionLogo: false }, timeScale: { timeVisible: true } });
    var levels = body.levels.map(function (level) { return Number(level.price); });
    var series = chart.addSeries(charts.CandlestickSeries, {
      upColor: COLORS.ok, downColor: COLORS.bad, wickUpColor: COLORS.ok, wickDownColor: COLORS.bad, borderVisible: false,
      // Keep the stop and take-profit lines in view even when the market is far from them.
      autoscaleInfoProvider: function (original) {
        var scale = original();
        if (scale !== null && levels.length) {
          scale.priceRange.minValue = Math.min.apply(null, levels.concat(scale.priceRange.minValue));
          scale.priceRange.maxValue = Math.max.apply(null, levels.concat(scale.priceRange.maxValue));
        }
        return scale;
      },
    });
    series.setData(body.candles.map(function (candle) {
      return {
        time: Math.floor(Date.parse(candle.time) / 1000),
        open: Number(candle.open),
        high: Number(candle.high),
        low: Number(candle.low),
        close: Number(candle.close),
      };
    }));
    body.levels.forEach(function (level) {
      series.createPriceLine({
        price: Number(level.price),
        color: COLORS[level.kind],
        lineWidth: 2,
        lineStyle: charts.LineStyle.Dashed,
        axisLabelVisible: true,
        title: LEVEL_TITLES[level.kind] + " #" + level.trade_id,
      });
    });
    chart.timeScale().fitContent();
    say(element, "");
    return true;
  }

  var DRAW = { equity: drawEquity, "daily-pnl": drawDailyPnl, price: drawPrice };

  function draw(element) {
    var kind = element.getAttribute("data-chart");
    var library = kind === "price" ? window.LightweightCharts : window.Chart;
    if (!library) {
      say(element, "The chart library did not load; the figures above are still current.");
      return;
    }
    load(element).then(function (body) {
      element.setAttribute("data-drawn", DRAW[kind](element, body) ? "true" : "empty");
    }).catch(function (error) {
      say(element, "Could not load the chart: " + error.message);
      element.setAttribute("data-drawn", "error");
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-chart]"), draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
