module parkscope.example/parkedcgo

go 1.19
