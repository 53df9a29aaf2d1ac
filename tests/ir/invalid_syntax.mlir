// RUN: not parse-print %s 2>&1 | filecheck %s

// Malformed IR: the parser reports every independent error (one per op
// statement or function header) with its file:line:col, then stops.  A value
// whose definition failed is not reported again where it is used.

func.func @ops(%x: tensor<2xf32>, %n: tensor<?xf32, "N">) -> (tensor<2xf32>) {
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:21: error: use of undefined value '%y'
  %0 = "dl.add"(%x, %y) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  // CHECK-NEXT: {{^}}  %0 = "dl.add"(%x, %y)
  // CHECK-NEXT: {{^ *\^\^$}}
  %1 = "dl.add"(%0, %0) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:8: error: unknown op 'dl.frobnicate'
  %2 = "dl.frobnicate"(%x) : (tensor<2xf32>) -> tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:8: error: unknown op 'arith.addf'
  %3 = "arith.addf"(%x, %x) : (tensor<2xf32>, tensor<2xf32>) -> tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:3: error: redefinition of value '%x'
  %x = "dl.neg"(%n) : (tensor<?xf32, "N">) -> tensor<?xf32, "N">
  // CHECK: note: previous definition at {{.*}}invalid_syntax.mlir:7:16
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:58: error: expected '->' between the op's operand and result types, found 'tensor'
  %4 = "dl.add"(%x, %x) : (tensor<2xf32>, tensor<2xf32>) tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:23: error: expected ':' and the type of 'dl.neg', found end of line
  %5 = "dl.neg"(%x) {}
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:26: error: 'dl.neg' has 2 operand(s) but its type lists 1
  %6 = "dl.neg"(%x, %x) : (tensor<2xf32>) -> tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:17: error: '%n' has type tensor<?xf32, "N">, but 'dl.neg' lists tensor<2xf32>
  %7 = "dl.neg"(%n) : (tensor<2xf32>) -> tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:26: error: 'dl.neg' defines 2 result(s) but its type lists 1
  %8, %9 = "dl.neg"(%x) : (tensor<2xf32>) -> tensor<2xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:43: error: unknown element type 'f31' (expected f32, f64, i32, i64 or i1)
  %10 = "dl.neg"(%x) : (tensor<2xf32>) -> tensor<2xf31>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:48: error: '?' dims need their symbol names in the encoding, e.g. 'tensor<?x784xf32, "N">'
  %11 = "dl.neg"(%n) : (tensor<?xf32, "N">) -> tensor<?xf32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:62: error: the tensor type has 1 '?' dim(s) but its encoding names 2 symbol(s)
  %12 = "dl.neg"(%n) : (tensor<?xf32, "N">) -> tensor<?xf32, "N,M">
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:30: error: expected an attribute value, found '}'
  %13 = "dl.sum"(%x) {axes = } : (tensor<2xf32>) -> tensor<f32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:33: error: duplicate attribute 'keepdims'
  %14 = "dl.sum"(%x) {keepdims, keepdims = true} : (tensor<2xf32>) -> tensor<f32>
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:15: error: result 0 of @ops is declared tensor<2xf32>, but func.return gives tensor<?xf32, "N">
  func.return %n : tensor<?xf32, "N">
}

// CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:11: error: redefinition of function @ops
func.func @ops() -> () {
  func.return
}
// CHECK: note: previous definition at {{.*}}invalid_syntax.mlir:7:1

func.func @no_return(%x: tensor<f32>) -> (tensor<f32>) {
  %0 = "dl.neg"(%x) : (tensor<f32>) -> tensor<f32>
// CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:1: error: expected 'func.return' before '}'
}

// CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:26: error: expected ':' after the parameter name, found 'tensor'
func.func @bad_header(%x tensor<f32>) -> (tensor<f32>) {
  func.return %x : tensor<f32>
}

func.func @bad_return(%x: tensor<f32>) -> (tensor<f32>, tensor<f32>) {
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:3: error: func.return has 1 operand(s) but lists 2 type(s)
  func.return %x : tensor<f32>, tensor<f32>
}

func.func @bad_count(%x: tensor<f32>) -> (tensor<f32>, tensor<f32>) {
  // CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:3: error: func.return returns 1 value(s) but @bad_count declares 2 result(s)
  func.return %x : tensor<f32>
}

// CHECK: {{.*}}invalid_syntax.mlir:[[# @LINE + 1]]:1: error: expected 'func.func', found 'garbage'
garbage here
// CHECK-NOT: error
